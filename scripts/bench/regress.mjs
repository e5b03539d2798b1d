// The speed guard: this checkout against another git ref, whole processes side by side.
//
// Builds REF in a temporary git worktree (its own npm ci, unless its package-lock.json equals this
// one's; its own dist/, or a copy of this one's where the controller's sources are the same; its
// Python package first on PYTHONPATH, the interpreter shared), then runs the same job from each,
// interleaved A B B A ... after one warm-up pair, and prints per case:
// wall seconds, user and sys CPU seconds of the whole process tree (the CLI, the controller, every
// worker), steps/s of the steady state (the median interval of metrics.jsonl's step records), and
// the ratios this / ref. It exits 1 when a case's median wall ratio or steady-state step-time ratio
// is above --max-ratio (default 1.03), so it can guard a release.
//
// Cases: default (the default job, `trqat train --set train.steps=N`) and ranks2 (the same with
// worker.nproc_per_node=2, gloo; skipped with a note where REF does not know it).
//
// Usage: node scripts/bench/regress.mjs --against REF [--quick|--full|--tiny] [--max-ratio R] [--pairs N] [--cases default,ranks2]
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNote, machineLine, median, medRange, outDir, parseArgs, pick, positiveInt, python, ROOT, run, table, waitQuiet, writeJson } from './lib.mjs';

const opts = parseArgs('regress.mjs', 'This checkout against another git ref: whole-process timings interleaved, ratios, exit 1 past a threshold', (cli) =>
  cli
    .requiredOption('--against <ref>', 'the git ref to compare with (a tag, branch or commit)')
    .option('--max-ratio <r>', 'fail (exit 1) when a median ratio this / ref is above this', '1.03')
    .option('--pairs <n>', 'measured pairs after the warm-up pair (default by budget: 1, 3, 5)', positiveInt)
    .option('--cases <list>', 'default, ranks2 or both, comma-separated (default: both)')
    .option('--keep-worktree', 'leave the worktree of REF in place (its path is printed)'),
);
const budget = opts.budget;
const maxRatio = Number(opts.maxRatio);
if (!(maxRatio > 0)) {
  console.error(`regress: --max-ratio must be a number > 0, got ${opts.maxRatio}`);
  process.exit(2);
}
const pairs = Number(opts.pairs ?? pick(budget, { tiny: 1, quick: 3, full: 5 }));
const steps = pick(budget, { tiny: 6, quick: 150, full: 300 });
// tiny proves the script works, not a speed: no warm-up pair there
const warmups = budget === 'tiny' ? 0 : 1;
// tiny only proves the script works (test/e2e/bench.test.ts): a few hundred images instead of the whole
// dataset, and one thread (beside other tests, every OpenMP region of a 2-thread step waits for a
// descheduled thread: a step took 4 s instead of 0.1)
const shrink = budget === 'tiny' ? ['data.train_subset=256', 'data.test_subset=256', 'data.batch_size=32', 'worker.threads=1'] : [];
const CASES = {
  default: { title: `default job, ${steps} steps`, overrides: [] },
  ranks2: { title: `default job on 2 gloo ranks, ${steps} steps`, overrides: ['worker.nproc_per_node=2'] },
};
const cases = (opts.cases ?? 'default,ranks2').split(',');
for (const c of cases) {
  if (!CASES[c]) {
    console.error(`regress: --cases takes ${Object.keys(CASES).join(', ')}; got ${c}`);
    process.exit(2);
  }
}
const dir = outDir(opts, 'regress');
const git = (...args) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
/** Whether a git command exits 0 (git diff --quiet: no difference). */
const gitQuiet = (...args) => spawnSync('git', args, { cwd: ROOT, stdio: 'ignore' }).status === 0;

let sha;
try {
  sha = git('rev-parse', '--verify', `${opts.against}^{commit}`);
} catch {
  console.error(`regress: ${opts.against} is not a git ref here (git rev-parse failed); fetch it or name a commit`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// the ref, built in its own worktree

const wt = mkdtempSync(join(tmpdir(), 'trqat-regress-'));
process.on('exit', () => {
  if (opts.keepWorktree) return;
  try {
    git('worktree', 'remove', '--force', wt);
  } catch {
    rmSync(wt, { recursive: true, force: true });
  }
});
process.stderr.write(`regress: building ${opts.against} (${sha.slice(0, 9)}) in ${wt}\n`);
git('worktree', 'add', '--detach', '--force', wt, sha);
const sameLock = existsSync(join(wt, 'package-lock.json')) && readFileSync(join(wt, 'package-lock.json'), 'utf8') === readFileSync(join(ROOT, 'package-lock.json'), 'utf8');
if (sameLock) symlinkSync(join(ROOT, 'node_modules'), join(wt, 'node_modules'));
else await run('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: wt });
// What the build reads is the same here (committed or not): the ref's dist/ would be this one's, so copy it.
const BUILD_INPUTS = ['src', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json'];
const sameBuild = existsSync(join(ROOT, 'dist', 'cli.js')) && gitQuiet('diff', '--quiet', sha, '--', ...BUILD_INPUTS) && !git('status', '--porcelain', '--untracked-files=all', '--', ...BUILD_INPUTS);
if (sameBuild) {
  process.stderr.write(`regress: ${opts.against} has this checkout's controller sources: its dist/ is a copy of this one's\n`);
  cpSync(join(ROOT, 'dist'), join(wt, 'dist'), { recursive: true });
} else await run('npm', ['run', 'build', '--silent'], { cwd: wt });

const SIDES = {
  this: { label: `this checkout (${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--untracked-files=no') ? ', with changes' : ''})`, root: ROOT },
  ref: { label: `${opts.against} (${sha.slice(0, 9)})`, root: wt },
};

/** One whole `trqat train` of a side: wall, the tree's user and sys CPU (bash `times`), steady-state steps/s. */
async function once(side, c, tag) {
  const { root } = SIDES[side];
  const args = [
    join(root, 'dist', 'cli.js'), 'train', '--set', `out_dir=${join(dir, 'runs')}`, '--set', `name=${side}-${tag}`,
    '--set', `train.steps=${steps}`, ...[...shrink, ...c.overrides].flatMap((o) => ['--set', o]),
  ];
  const env = { TRQAT_PYTHON: python(), PYTHONPATH: [join(root, 'python'), process.env.PYTHONPATH].filter(Boolean).join(':') };
  // `times` after the command: CPU of the shell's waited-for children, the whole process tree
  const script = `"${process.execPath}" ${args.map((a) => `'${a}'`).join(' ')} </dev/null >"$OUTLOG" 2>&1; rc=$?; times; exit $rc`;
  const log = join(dir, `${side}-${tag}.log`);
  const t0 = performance.now();
  const epoch0 = Date.now() / 1000;
  const res = await run('bash', ['-c', script], { env: { ...env, OUTLOG: log }, allowFail: true, cwd: root });
  const wall = (performance.now() - t0) / 1000;
  if (res.code !== 0) throw new Error(`${side}: trqat train exited ${res.code}; see ${log}:\n${readFileSync(log, 'utf8').split('\n').slice(-12).join('\n')}`);
  const [, children] = res.stdout.trim().split('\n').slice(-2);
  const [user, sys] = children.split(/\s+/).map((t) => {
    const m = /(\d+)m([\d.]+)s/.exec(t);
    return Number(m[1]) * 60 + Number(m[2]);
  });
  const runDir = /run folder: (.*)/.exec(readFileSync(log, 'utf8'))?.[1]?.trim();
  let stepS = null;
  let startS = null; // process start to the first step record: start-up
  let endS = null; // the last step record to the process's exit: final evaluation, checkpoint, shutdown
  if (runDir && existsSync(join(runDir, 'metrics.jsonl'))) {
    const times = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.type === 'step' && typeof r.time === 'number').map((r) => r.time);
    // the median interval, the first 10% left out: the last record waits for the final evaluation and
    // checkpoint in some versions (not in others), and must not count as a step
    const skip = Math.max(1, Math.floor(times.length / 10));
    const intervals = times.slice(skip, -1).map((t, i) => times[skip + i + 1] - t).slice(0, -1);
    if (intervals.length >= 2) stepS = median(intervals);
    if (times.length > 0) {
      startS = times[0] - epoch0;
      endS = epoch0 + wall - times.at(-1);
    }
    rmSync(runDir, { recursive: true, force: true });
  }
  return { wall, user, sys, stepS, startS, endS };
}

/** Whether a side's controller accepts the case's overrides (an old ref may not know them). */
async function refuses(side, c) {
  if (c.overrides.length === 0) return null;
  const res = await run(process.execPath, [join(SIDES[side].root, 'dist', 'cli.js'), 'config', ...c.overrides.flatMap((o) => ['--set', o])], { allowFail: true, cwd: SIDES[side].root });
  return res.code === 0 ? null : (res.stderr.trim().split('\n')[0] ?? `exit ${res.code}`);
}

const rows = [];
const notes = [];
const results = {};
let failed = false;
for (const name of cases) {
  const c = CASES[name];
  const refusal = (await refuses('this', c)) ?? (await refuses('ref', c));
  if (refusal) {
    notes.push(`${name}: skipped, a side refuses ${c.overrides.join(' ')}: ${refusal}`);
    continue;
  }
  const samples = { this: [], ref: [] };
  for (let p = warmups ? 0 : 1; p <= pairs; p++) {
    for (const side of p % 2 ? ['ref', 'this'] : ['this', 'ref']) {
      await waitQuiet();
      process.stderr.write(`regress: ${name} ${p === 0 ? 'warm-up' : `pair ${p}/${pairs}`} ${side}\n`);
      const r = await once(side, c, `${name}-${p}`);
      if (p > 0) samples[side].push(r);
    }
  }
  results[name] = samples;
  const ratio = (key) => samples.this.map((s, i) => s[key] / samples.ref[i][key]);
  const stepRatio = samples.this.every((s) => s.stepS) && samples.ref.every((s) => s.stepS) ? ratio('stepS') : null;
  const worst = Math.max(median(ratio('wall')), stepRatio ? median(stepRatio) : 0);
  const verdict = worst > maxRatio ? `FAIL (> ${maxRatio})` : 'ok';
  if (worst > maxRatio) failed = true;
  for (const side of ['ref', 'this']) {
    const s = samples[side];
    const phase = (key) => (s.every((x) => x[key] !== null) ? medRange(s.map((x) => x[key]), 1) : 'n/a');
    rows.push([c.title, SIDES[side].label, medRange(s.map((x) => x.wall), 1), phase('startS'), phase('endS'), medRange(s.map((x) => x.user), 1), medRange(s.map((x) => x.sys), 1), s.every((x) => x.stepS) ? medRange(s.map((x) => 1 / x.stepS), 2) : 'n/a', '']);
  }
  const diff = (key) => (samples.this.every((x) => x[key] !== null) && samples.ref.every((x) => x[key] !== null) ? `${medRange(samples.this.map((x, i) => x[key] - samples.ref[i][key]), 1)} s` : 'n/a');
  rows.push([c.title, 'ratio this / ref', medRange(ratio('wall'), 3), diff('startS'), diff('endS'), medRange(ratio('user'), 3), medRange(ratio('sys'), 3), stepRatio ? `step time ${medRange(stepRatio, 3)}` : 'n/a', verdict]);
}
const text = table(`Speed guard: this checkout against ${opts.against} (${budget})`, ['case', 'side', 'wall s', 'first step at s', 'after last step s', 'user s', 'sys s', 'steady steps/s', 'verdict'], rows, [
  machineLine(),
  loadNote(),
  `Whole \`trqat train\` processes of the default job (${steps} steps, as a user runs it), ${pairs} measured pair(s)${warmups ? ' after a warm-up pair' : ''}, order alternating (A B, B A, ...). Figures: median [min–max]. user and sys: CPU seconds of the whole process tree. first step at: process start to the first step record (start-up); after last step: the last step record to the exit (final evaluation, checkpoint, shutdown); in the ratio row these two are differences this - ref. steady steps/s: 1 / the median interval between step records in metrics.jsonl, the first 10% and the last record (which may wait for the final evaluation) left out. A ratio above ${maxRatio} in wall or step time fails.`,
  ...notes,
]);
console.log(text);
writeJson(join(dir, `regress-${budget}.json`), { against: opts.against, sha, budget, steps, pairs, maxRatio, results, notes, table: text });
process.exitCode = failed ? 1 : 0;
