// Reliability campaign: the trials' config and the processes they start (real `node dist/cli.js
// train|resume`), followed by their output lines. `configure` sets the budget and the out folder
// before any trial runs; the exported `let`s are read live by the scenario modules.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DIST, readJson, ROOT } from '../lib.mjs';

export const CLI = join(DIST, 'cli.js');
export const HEARTBEAT_TIMEOUT_MS = 3000;
/** The longest any CLI process may take before the campaign kills it (a hang is then a lost trial). */
export const CLI_LIMIT_MS = 300_000;
/** How long the controller may take to end its worker once it is itself killed (the project's promise). */
export const ORPHAN_LIMIT_MS = 5000;
/** Each CLI a trial starts carries this variable (with the trial's name): every process of the trial is found by it. */
export const MARK = 'TRQAT_RELIABILITY_TRIAL';

export let budget = 'quick';
export let dir = '';
export let STEPS = 48;
export let BASE = [];
/** The trials of one config are counted together; another config (another budget's length) starts its own count. */
export let CONFIG_KEY = '';
/** Where the trials' runs go (scenario 7: on its tmpfs). */
export let RUNS = '';

/** The config: the tiny config of the tests, with checkpoints every 4 steps. */
export function configure(theBudget, outFolder) {
  budget = theBudget;
  dir = outFolder;
  RUNS = join(dir, 'runs');
  STEPS = { tiny: 24, quick: 48, full: 48 }[budget];
  BASE = [
    'data.name=synthetic',
    'data.synthetic.train_size=256',
    'data.synthetic.test_size=128',
    // tiny (the tests' scenarios 1 and 6, drawn by step): 12x12 images, a fifth of the step; quick and
    // full keep 28x28, whose runs outlast scenario 8's first 9 s and scenario 7's filling of the disk
    ...(budget === 'tiny' ? ['data.synthetic.image_size=12'] : []),
    'data.batch_size=32',
    'data.eval_batch_size=128',
    `train.steps=${STEPS}`,
    `train.eval_every=${STEPS / 3}`,
    'train.checkpoint_every=4',
    'train.log_every=1',
    'worker.device=cpu',
    'worker.threads=1',
    'worker.heartbeat_interval_ms=200',
    `worker.heartbeat_timeout_ms=${HEARTBEAT_TIMEOUT_MS}`,
    'worker.max_restarts=0',
    'dashboard.enabled=false',
    // As the tests' tiny config: a faster controller than the paper's, so U moves within a few steps.
    'tr.lambda=0.02',
    'tr.momentum=0.5',
  ];
  CONFIG_KEY = createHash('sha256').update(JSON.stringify(BASE)).digest('hex').slice(0, 8);
}

export const setRuns = (folder) => (RUNS = folder);

/** settings → --set arguments (worker.* settings do not change the numbers: a resume may change them). */
export const sets = (settings) => settings.flatMap((s) => ['--set', s]);

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether `pid` runs (a zombie, dead but not yet reaped, does not). */
export function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return true; // no /proc: kill(0) is all there is
  }
}

/** Milliseconds until `pid` is gone (at most `limitMs`, then null). */
export async function goneWithin(pid, limitMs) {
  const start = Date.now();
  while (alive(pid)) {
    if (Date.now() - start > limitMs) return null;
    await sleep(10);
  }
  return Date.now() - start;
}

/** The live processes of trial `name` (its CLI's mark in their environment): [{pid, command}]. */
export function marked(name) {
  const entry = `${MARK}=${name}`;
  const found = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(entry) || !alive(Number(pid))) continue;
      found.push({ pid: Number(pid), command: readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter(Boolean).join(' ') });
    } catch {
      // gone meanwhile, or another user's
    }
  }
  return found;
}

/** The CLI processes running now: a trial that ends early (a harness error) leaves none behind. */
export const running = new Set();

/**
 * Starts `node dist/cli.js ...argv` (marked with `mark`, the trial's name) and follows its output:
 * `runDir` once printed, `whenStep(p)` resolves with the time of the first step line whose step
 * count (steps done) satisfies `p` (null if the CLI ends first), `ended` with {code, signal, at,
 * stdout, stderr}. Killed after CLI_LIMIT_MS.
 */
export function startCli(argv, mark = 'none') {
  const child = spawn(process.execPath, [CLI, ...argv], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, [MARK]: mark } });
  const cli = { child, stdout: '', stderr: '', runDir: null, exitAt: null, waiting: new Set(), startedAt: Date.now() };
  let partial = '';
  child.stdout.on('data', (chunk) => {
    cli.stdout += chunk;
    const lines = (partial + chunk).split('\n');
    partial = lines.pop();
    for (const line of lines) {
      cli.runDir ??= /^run folder (\S+)/.exec(line)?.[1] ?? null;
      const done = /^step (\d+)\//.exec(line)?.[1];
      if (done === undefined) continue;
      for (const waiter of [...cli.waiting]) {
        if (waiter.predicate(Number(done))) {
          cli.waiting.delete(waiter);
          waiter.resolve(Date.now());
        }
      }
    }
  });
  child.stderr.on('data', (chunk) => (cli.stderr += chunk));
  const limit = setTimeout(() => child.kill('SIGKILL'), CLI_LIMIT_MS);
  child.on('exit', () => (cli.exitAt = Date.now()));
  cli.ended = new Promise((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      for (const waiter of cli.waiting) waiter.resolve(null);
      cli.waiting.clear();
      resolve({ code, signal, at: cli.exitAt ?? Date.now(), stdout: cli.stdout, stderr: cli.stderr });
    }),
  );
  cli.exited = new Promise((resolve) => child.on('exit', resolve));
  cli.whenStep = (predicate) => new Promise((resolve) => cli.waiting.add({ predicate, resolve }));
  running.add(cli);
  void cli.ended.then(() => running.delete(cli));
  return cli;
}

export const trainCli = (name, extra = []) => startCli(['train', ...sets([...BASE, `out_dir=${RUNS}`, `name=${name}`, ...extra])], name);
export const resumeCli = (runDir) => startCli(['resume', runDir], `resume:${runDir}`).ended;

/** Waits for the first step line whose step count satisfies `predicate`; false (with the reason noted) when the run ends first. */
export async function reached(f, cli, predicate, what) {
  if (await cli.whenStep(predicate)) return true;
  await cli.ended;
  f.check(false, `the run ended before ${what}`);
  return false;
}

export const runInfo = (runDir) => readJson(join(runDir, 'run.json'));
export const workerPid = (runDir, rank = 0) => runInfo(runDir).ranks?.find((r) => r.rank === rank)?.pid ?? null;
/** The CLI's error: the first line of its stderr that is not a warning. */
export const errorLine = (text) => text.split('\n').find((line) => line.trim() !== '' && !line.startsWith('warning: ')) ?? '';
export const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
/** A stack trace on the console: Python's or Node's. */
export const stackTrace = (text) => /\n\s+at |Traceback/.test(text);
