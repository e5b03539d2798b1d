// Shared helpers of the benchmark scripts: paths, argument parsing, statistics, tables, child processes.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import jstat from 'jstat';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(BENCH_DIR, '..', '..');
export const DIST = join(ROOT, 'dist');

/** The interpreter of the worker and of the Python halves of the benchmarks: the controller's own lookup. */
export function python() {
  return launcher().resolvePython(null);
}

// The built controller's launcher, loaded once (top-level await below): one interpreter lookup for all.
const launcherModule = existsSync(join(DIST, 'bridge', 'launcher.js')) ? await import(join(DIST, 'bridge', 'launcher.js')) : null;
function launcher() {
  if (!launcherModule) {
    console.error(`bench: ${join(DIST, 'bridge', 'launcher.js')} is missing; build the controller first (npm run build)`);
    process.exit(1);
  }
  return launcherModule;
}

/** Imports the built controller (dist/); a clear message when it is missing. */
export async function importDist(path = 'index.js') {
  const file = join(DIST, path);
  if (!existsSync(file)) {
    console.error(`bench: ${file} is missing; build the controller first (npm run build)`);
    process.exit(2);
  }
  return import(file);
}

export const BUDGETS = ['tiny', 'quick', 'full'];

/** commander's parser of whole numbers >= 1 (--reps, --steps, --threads, ...). */
export function positiveInt(value) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number >= 1');
  return n;
}

/**
 * The command line of a benchmark script, parsed by commander: the budget (--tiny, --quick, --full
 * or --budget X; default quick), --out DIR, and the script's own options, added by
 * `options(program)`. `--help` lists them all. Bad usage exits 2 with the reason. Returns the
 * options (camelCase: --latency-models is `latencyModels`) with `budget` always set.
 */
export function parseArgs(name, description, options = (program) => program, argv = process.argv) {
  const program = new Command(name)
    .description(description)
    .addOption(new Option('--budget <budget>', 'how long it runs: tiny (seconds; what the tests run), quick (minutes), full').choices(BUDGETS).default('quick'))
    .addOption(new Option('--tiny', 'the same as --budget tiny').implies({ budget: 'tiny' }))
    .addOption(new Option('--quick', 'the same as --budget quick').implies({ budget: 'quick' }))
    .addOption(new Option('--full', 'the same as --budget full').implies({ budget: 'full' }))
    .option('--out <dir>', `the folder of results (default: ${join('runs', 'bench')})`)
    .showHelpAfterError('(--help for the options)')
    .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2));
  options(program);
  program.parse(argv);
  const opts = program.opts();
  // Measurements time fresh workers, as users start them; the tests' tiny budget checks the tables only.
  if (opts.budget !== 'tiny') delete process.env['TRQAT_FORKSERVER'];
  return opts;
}

/** Picks the value of the current budget from {tiny, quick, full}. */
export const pick = (budget, values) => values[budget];

// ---------------------------------------------------------------------------------------------
// statistics

export function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}
export const median = (values) => quantile(values, 0.5);
export const mean = (values) => values.reduce((s, v) => s + v, 0) / values.length;
export function std(values) {
  if (values.length < 2) return 0;
  const m = mean(values);
  return Math.sqrt(values.reduce((s, v) => s + (v - m) ** 2, 0) / (values.length - 1));
}
export const min = (values) => Math.min(...values);
export const max = (values) => Math.max(...values);

/** "1.234 [1.200–1.300]": median with the range over repetitions. */
export function medRange(values, digits = 3, scale = 1) {
  if (values.length === 0) return 'n/a';
  const f = (v) => (v * scale).toFixed(digits);
  return values.length === 1 ? f(values[0]) : `${f(median(values))} [${f(min(values))}–${f(max(values))}]`;
}

/**
 * Welch's two-sample t-test (unequal variances, Satterthwaite's degrees of freedom), two-sided:
 * {diff: mean(x) - mean(y), t, df, p}; null when a sample has fewer than 2 values or no spread.
 * The t distribution's CDF is jStat's.
 */
export function welch(x, y) {
  if (x.length < 2 || y.length < 2) return null;
  const a = std(x) ** 2 / x.length;
  const b = std(y) ** 2 / y.length;
  if (a + b === 0) return null;
  const diff = mean(x) - mean(y);
  const t = diff / Math.sqrt(a + b);
  const df = (a + b) ** 2 / (a ** 2 / (x.length - 1) + b ** 2 / (y.length - 1));
  return { diff, t, df, p: 2 * (1 - jstat.jStat.studentt.cdf(Math.abs(t), df)) };
}

/** "12.3 ± 0.4": mean and sample standard deviation. */
export function meanStd(values, digits = 2) {
  if (values.length === 0) return 'n/a';
  return values.length === 1 ? values[0].toFixed(digits) : `${mean(values).toFixed(digits)} ± ${std(values).toFixed(digits)}`;
}

// ---------------------------------------------------------------------------------------------
// output

/** A markdown table: `rows` are arrays of cells. */
export function table(title, header, rows, notes = []) {
  const lines = [`### ${title}`, '', `| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const row of rows) lines.push(`| ${row.map((cell) => String(cell ?? '')).join(' | ')} |`);
  if (notes.length > 0) lines.push('', ...notes.map((note) => `- ${note}`));
  return `${lines.join('\n')}\n`;
}

/** One line that says where a table was measured. */
export function machineLine() {
  const cpu = cpus();
  const gib = (totalmem() / 2 ** 30).toFixed(0);
  return `machine: ${hostname()}, ${cpu.length} × ${cpu[0]?.model.trim() ?? 'cpu'}, ${gib} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 16)}Z`;
}

/** Where a benchmark keeps its run folders and results: runs/bench/<name> (git-ignored) unless --out. */
export function outDir(opts, name) {
  const dir = resolve(opts.out ?? join(ROOT, 'runs', 'bench'), name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function writeJson(path, value) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(value, null, 1)}\n`);
}
export const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));

// ---------------------------------------------------------------------------------------------
// child processes

/**
 * Runs a command and resolves with {code, stdout, stderr}. Rejects with the stderr tail when it
 * fails, unless `allowFail`.
 */
export function run(command, args, { env = {}, allowFail = false, echo = false, cwd = ROOT } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (echo === true) process.stdout.write(chunk);
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      if (echo) process.stderr.write(chunk);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0 && !allowFail) {
        const tail = stderr.split('\n').slice(-25).join('\n');
        reject(new Error(`${command} ${args.join(' ')} exited with ${code}:\n${tail}`));
      } else resolvePromise({ code, stdout, stderr });
    });
  });
}

/** Runs a Python script of scripts/bench with the project's interpreter; parses its last stdout line as JSON. */
export async function runPythonJson(script, args, options = {}) {
  const env = { PYTHONPATH: [join(ROOT, 'python'), process.env.PYTHONPATH].filter(Boolean).join(':'), ...options.env };
  // through a fork server when there is one (the tests' tiny budget only: parseArgs drops it otherwise)
  const [interpreter, ...command] = launcher().pythonCommand(null, join(BENCH_DIR, script));
  const { stdout } = await run(interpreter, [...command, ...args], { ...options, env });
  const last = stdout.trim().split('\n').pop();
  return JSON.parse(last);
}

/** Runs a Node script of scripts/bench; parses its last stdout line as JSON. */
export async function runNodeJson(script, args, options = {}) {
  const { stdout } = await run(process.execPath, [join(BENCH_DIR, script), ...args], options);
  return JSON.parse(stdout.trim().split('\n').pop());
}

/**
 * Whether the controller's config accepts these overrides: null when it does, else the error.
 * Used to skip models or settings that do not exist yet, with a note instead of a crash.
 */
export async function configError(overrides) {
  const { loadConfig } = await importDist();
  try {
    loadConfig(null, overrides);
    return null;
  } catch (error) {
    return error.message.split('\n')[0];
  }
}

/** Model names the Python registry knows (trqat.models.MODELS). */
export async function pythonModels() {
  const { stdout } = await run(python(), ['-c', 'import json; from trqat.models import MODELS; print(json.dumps(sorted(MODELS)))'], {
    env: { PYTHONPATH: join(ROOT, 'python') },
  });
  return JSON.parse(stdout.trim());
}

/** Skips models that do not exist yet (in the Python registry or the controller's config), with the reason. */
export async function availableModels(names) {
  const known = await pythonModels();
  const ok = [];
  const skipped = [];
  for (const name of names) {
    if (!known.includes(name)) {
      skipped.push({ name, reason: `not in trqat.models.MODELS (has: ${known.join(', ')})` });
      continue;
    }
    const error = await configError([`model.name=${name}`]);
    if (error) skipped.push({ name, reason: `config refuses it: ${error}` });
    else ok.push(name);
  }
  return { ok, skipped };
}

// ---------------------------------------------------------------------------------------------
// other load on the machine (benchmarks are only meaningful on a quiet machine)

function cpuTicks() {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  const v = fields.map(Number);
  const idle = v[3] + (v[4] ?? 0);
  return { busy: v.reduce((s, x) => s + x, 0) - idle, total: v.reduce((s, x) => s + x, 0) };
}

/** Busy cores over `ms` while this benchmark itself sits idle: the load of other processes. */
export async function busyCores(ms = 500) {
  if (!existsSync('/proc/stat')) return 0;
  const a = cpuTicks();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTicks();
  return ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * cpus().length;
}

const loadSeen = [];
/**
 * Waits (up to `maxWaitS`) until other processes use less than `threshold` cores, and records what
 * it saw; `loadNote()` reports it under the tables.
 */
export async function waitQuiet({ threshold = 0.3, maxWaitS = Number(process.env.TRQAT_BENCH_MAX_WAIT_S ?? 90) } = {}) {
  const start = Date.now();
  let busy = await busyCores();
  while (busy > threshold && Date.now() - start < maxWaitS * 1000) {
    await new Promise((r) => setTimeout(r, 3000));
    busy = await busyCores();
  }
  loadSeen.push(busy);
  return busy;
}

export function loadNote() {
  if (loadSeen.length === 0) return 'other load not sampled';
  const worst = Math.max(...loadSeen);
  const flag = worst > 0.3 ? ' — the machine was NOT quiet: treat these figures as upper bounds' : '';
  return `other processes' load sampled before each repetition: median ${median(loadSeen).toFixed(2)}, max ${worst.toFixed(2)} cores busy${flag}`;
}
