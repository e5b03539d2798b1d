// Reliability: a resumable campaign of randomized fault trials against real runs of the CLI
// (`node dist/cli.js train|resume`, the real Python worker over real ZeroMQ), on a small, fast config.
// Each trial injects one fault at a moment drawn from its seed, then checks what the run did against
// an uninterrupted reference run of the same config: the metrics log's step and evaluation records,
// without their clock fields, must be equal record for record. Scenarios:
//   1 worker-kill        the worker SIGKILLed at a random step (worker.max_restarts=0): a clear error;
//                        `trqat resume` finishes
//   2 checkpoint-kill    the worker SIGKILLed while a checkpoint is written (its .partial folder
//                        appears, its temporary worker.pt appears, or worker.pt is in place): the latest
//                        checkpoint is intact; resume finishes
//   3 auto-restart       the worker SIGKILLed twice (worker.max_restarts=2): the run completes by itself
//   4 worker-hang        the worker SIGSTOPped: noticed within worker.heartbeat_timeout_ms, nothing left
//                        running; resume finishes
//   5 controller-kill    the CLI process SIGKILLed: its worker gone within 5 s; resume warns about the
//                        stale "running" and finishes
//   6 corrupt-checkpoint a run stopped by Ctrl-C, then its newest checkpoint damaged (bytes flipped or
//                        truncated, in worker.pt or controller.json): resume warns, uses the previous one
//   7 disk-full          the disk filled mid-run (a tmpfs in a user+mount namespace, `unshare -rm`): exit 1
//                        naming the file, the previous checkpoint intact; freed, resume finishes
// A trial survives when every check holds; otherwise it is lost, with what went wrong. Each finished
// trial is one JSON line of <out>/reliability/trials.jsonl (its seed replays it: --replay 1:1003);
// a new start runs only the trials still missing for the budget (tiny: one trial of scenarios 1 and 6;
// quick: 3 of each; full: 20 of each). Run folders of lost trials are kept for inspection.
//
// Usage: node scripts/bench/reliability.mjs [--tiny|--quick|--full] [options] (--help: the options)
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { Option } from 'commander';
import { fill } from './full-disk.mjs';
import { DIST, importDist, machineLine, medRange, outDir, parseArgs, positiveInt, readJson, ROOT, run, table, writeJson } from './lib.mjs';

const opts = parseArgs('reliability.mjs', 'Reliability: randomized fault trials against real runs; tried, survived and lost per scenario', (cli) =>
  cli
    .option('--trials <n>', 'trials per scenario (default by budget: 1, 3, 20)', positiveInt)
    .option('--scenarios <list>', 'only these scenarios, by number or name (default by budget: tiny 1,6; else all)')
    .option('--replay <scenario:seed>', 'run one trial again from its seed (e.g. 1:1003); prints its record, records nothing')
    .addOption(new Option('--disk-full-in <dir>', 'internal: run the --replay trial of scenario 7 inside the namespace, on the tmpfs at <dir>').hideHelp()),
);
const budget = opts.budget;
const dir = outDir(opts, 'reliability');
const TRIALS_FILE = join(dir, 'trials.jsonl');
const CLI = join(DIST, 'cli.js');
const SELF = fileURLToPath(import.meta.url);
const { MetricsLog } = await importDist();
const { Checkpoints } = await importDist('run/checkpoints.js');

// ---------------------------------------------------------------------------------------------
// the config: the tiny config of the tests, with checkpoints every 4 steps

const STEPS = { tiny: 24, quick: 48, full: 48 }[budget];
const BASE = [
  'data.name=synthetic',
  'data.synthetic.train_size=256',
  'data.synthetic.test_size=128',
  'data.batch_size=32',
  'data.eval_batch_size=128',
  `train.steps=${STEPS}`,
  `train.eval_every=${STEPS / 3}`,
  'train.checkpoint_every=4',
  'train.log_every=1',
  'worker.device=cpu',
  'worker.threads=1',
  'worker.heartbeat_interval_ms=200',
  'worker.heartbeat_timeout_ms=3000',
  'worker.max_restarts=0',
  'dashboard.enabled=false',
  // As the tests' tiny config: a faster controller than the paper's, so U moves within a few steps.
  'tr.lambda=0.02',
  'tr.momentum=0.5',
];
/** The trials of one config are counted together; another config (another budget's length) starts its own count. */
const CONFIG_KEY = createHash('sha256').update(JSON.stringify(BASE)).digest('hex').slice(0, 8);
const HEARTBEAT_TIMEOUT_MS = 3000;
/** The longest any CLI process may take before the campaign kills it (a hang is then a lost trial). */
const CLI_LIMIT_MS = 300_000;
/** How long the controller may take to end its worker once it is itself killed (the project's promise). */
const ORPHAN_LIMIT_MS = 5000;

/** settings → --set arguments (worker.* settings do not change the numbers: a resume may change them). */
const sets = (settings) => settings.flatMap((s) => ['--set', s]);

// ---------------------------------------------------------------------------------------------
// processes

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether `pid` runs (a zombie, dead but not yet reaped, does not). */
function alive(pid) {
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
async function goneWithin(pid, limitMs) {
  const start = Date.now();
  while (alive(pid)) {
    if (Date.now() - start > limitMs) return null;
    await sleep(10);
  }
  return Date.now() - start;
}

/**
 * Starts `node dist/cli.js ...argv` and follows its output: `runDir` once printed, `whenStep(p)`
 * resolves with the time of the first step line whose step count (steps done) satisfies `p` (null if
 * the CLI ends first), `ended` with {code, signal, at, stdout, stderr}. Killed after CLI_LIMIT_MS.
 */
/** The CLI processes running now: a trial that ends early (a harness error) leaves none behind. */
const running = new Set();

function startCli(argv) {
  const child = spawn(process.execPath, [CLI, ...argv], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const cli = { child, stdout: '', stderr: '', runDir: null, exitAt: null, waiting: new Set() };
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
  cli.whenStep = (predicate) => new Promise((resolve) => cli.waiting.add({ predicate, resolve }));
  running.add(cli);
  void cli.ended.then(() => running.delete(cli));
  return cli;
}

/** Where the trials' runs go (scenario 7: on its tmpfs). */
let RUNS = join(dir, 'runs');
const trainCli = (name, extra = []) => startCli(['train', ...sets([...BASE, `out_dir=${RUNS}`, `name=${name}`, ...extra])]);
const resumeCli = (runDir) => startCli(['resume', runDir]).ended;

/** Waits for the first step line whose step count satisfies `predicate`; false (with the reason noted) when the run ends first. */
async function reached(f, cli, predicate, what) {
  if (await cli.whenStep(predicate)) return true;
  await cli.ended;
  f.check(false, `the run ended before ${what}`);
  return false;
}

const runInfo = (runDir) => readJson(join(runDir, 'run.json'));
const workerPid = (runDir) => runInfo(runDir).ranks?.[0]?.pid ?? null;
/** The CLI's error: the first line of its stderr that is not a warning. */
const errorLine = (text) => text.split('\n').find((line) => line.trim() !== '' && !line.startsWith('warning: ')) ?? '';
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

// ---------------------------------------------------------------------------------------------
// the reference, and what "equal to it" means

/** The uninterrupted run of the config (run once; its folder is remembered in the out folder). */
async function reference() {
  const pointer = join(dir, `reference-${CONFIG_KEY}.json`);
  if (existsSync(pointer)) {
    const { runDir } = readJson(pointer);
    if (existsSync(join(runDir, 'run.json')) && runInfo(runDir).status === 'completed') return runDir;
  }
  process.stderr.write(`reliability: the reference run (${STEPS} steps)\n`);
  const cli = startCli(['train', ...sets([...BASE, `out_dir=${join(dir, 'reference')}`, `name=reference-${CONFIG_KEY}`])]);
  const ended = await cli.ended;
  if (ended.code !== 0) throw new Error(`the reference run failed (exit ${ended.code}):\n${ended.stderr}`);
  writeJson(pointer, { runDir: cli.runDir, settings: BASE });
  return cli.runDir;
}

/** A metrics record without its clock fields. */
const numbers = ({ time: _t, steps_per_s: _s, seconds: _e, ...rest }) => rest;

/** null when the run's step and evaluation records equal the reference's, else the first difference. */
function difference(runDir, refDir) {
  const read = (d) => MetricsLog.read(join(d, 'metrics.jsonl')).map(numbers);
  const [got, want] = [read(runDir), read(refDir)];
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    const [a, b] = [got[i], want[i]];
    if (!a || !b) return `the metrics log has ${got.length} records, the reference ${want.length} (first missing: ${JSON.stringify(a ?? b).slice(0, 80)})`;
    if (JSON.stringify(a) === JSON.stringify(b)) continue;
    const fields = Object.keys({ ...a, ...b }).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
    const show = (r) => fields.slice(0, 3).map((k) => `${k}=${JSON.stringify(r[k])?.slice(0, 40)}`).join(', ');
    return `${a.type} record ${i} (step ${a.step}) differs: ${show(a)}; the reference has ${show(b)}`;
  }
  const status = runInfo(runDir).status;
  return status === 'completed' ? null : `run.json says "${status}" after the resume`;
}

// ---------------------------------------------------------------------------------------------
// the scenarios: what is drawn from the seed (fast-check arbitraries, without bias), and the trial

/** What one trial found: a reason for each check that did not hold, latencies in ms, what the fault did. */
class Findings {
  reasons = [];
  latency_ms = [];
  fault = {};
  check(ok, reason) {
    if (!ok) this.reasons.push(reason);
    return ok;
  }
}

/** The common ending: `trqat resume` finishes and the run equals the reference. */
async function resumeEqualsReference(f, runDir, refDir, expectStderr = null) {
  const resumed = await resumeCli(runDir);
  if (!f.check(resumed.code === 0, `resume exited ${resumed.code}: ${errorLine(resumed.stderr).slice(0, 200)}`)) return resumed;
  if (expectStderr) f.check(expectStderr.test(resumed.stderr), `resume did not say ${expectStderr} (stderr: ${resumed.stderr.trim().split('\n')[0]?.slice(0, 160) || 'empty'})`);
  const diff = difference(runDir, refDir);
  f.check(diff === null, `not equal to the reference: ${diff}`);
  const partials = readdirSync(join(runDir, 'checkpoints')).filter((name) => name.endsWith('.partial'));
  f.check(partials.length === 0, `left behind after the resume: ${partials.join(', ')}`);
  return resumed;
}

/** A run the fault stopped (worker.max_restarts=0): exit 1, an error matching `error`, no stack trace. */
function failedClearly(f, ended, error) {
  f.fault.error = errorLine(ended.stderr).slice(0, 240);
  f.check(ended.code === 1, `the CLI exited ${ended.code}${ended.signal ? ` (${ended.signal})` : ''}, not 1`);
  f.check(error.test(ended.stderr), `no clear error matching ${error}: "${f.fault.error}"`);
  f.check(!/\n\s+at |Traceback/.test(ended.stderr), 'a stack trace on the console');
}

const stepIn = (lo, hi) => fc.integer({ min: lo, max: hi });

/**
 * Starts a run and sends `signal` to its worker once step `step` is done; the run must then fail
 * clearly (`error`). The latency is from the signal to the CLI's exit. pid is null when the run
 * never reached the step (the trial has failed already).
 */
async function signalWorkerAt(f, name, step, signal, error) {
  const cli = trainCli(name);
  if (!(await reached(f, cli, (done) => done === step, `step ${step}`))) return { cli, pid: null, noticedMs: null };
  const pid = workerPid(cli.runDir);
  const at = Date.now();
  process.kill(pid, signal);
  const ended = await cli.ended;
  f.latency_ms.push(ended.at - at);
  failedClearly(f, ended, error);
  return { cli, pid, noticedMs: ended.at - at };
}

const SCENARIOS = [
  {
    n: 1,
    id: 'worker-kill',
    title: 'worker SIGKILL at a random step',
    latency: 'kill → CLI exit',
    draw: () => fc.record({ step: stepIn(5, STEPS - 5) }),
    async trial(f, { step }, name, refDir) {
      const { cli, pid } = await signalWorkerAt(f, name, step, 'SIGKILL', /rank 0 was killed by SIGKILL/);
      if (pid === null) return cli.runDir;
      f.check(runInfo(cli.runDir).status === 'failed', `run.json says "${runInfo(cli.runDir).status}", not "failed"`);
      await resumeEqualsReference(f, cli.runDir, refDir);
      return cli.runDir;
    },
  },
  {
    n: 2,
    id: 'checkpoint-kill',
    title: 'worker SIGKILL during a checkpoint write',
    latency: 'kill → CLI exit',
    draw: () => fc.record({ checkpoint: stepIn(2, Math.floor((STEPS - 8) / 4)).map((i) => 4 * i), moment: fc.constantFrom('folder', 'temporary', 'worker.pt') }),
    async trial(f, { checkpoint, moment }, name, refDir) {
      const cli = trainCli(name);
      // The checkpoint before the target is committed by then: its folder exists to watch.
      if (!(await reached(f, cli, (done) => done === checkpoint - 3, `step ${checkpoint - 3}`))) return cli.runDir;
      const runDir = cli.runDir;
      const partial = join(runDir, 'checkpoints', `step-${String(checkpoint).padStart(7, '0')}.partial`);
      const killedAt = await killWhenCheckpointing(partial, moment, workerPid(runDir), cli);
      if (!killedAt) {
        await cli.ended;
        return f.check(false, `the run ended before the checkpoint of step ${checkpoint} was written`), runDir;
      }
      f.fault.partial_held = existsSync(partial) ? readdirSync(partial).sort() : null; // null: the commit came first
      const ended = await cli.ended;
      f.latency_ms.push(ended.at - killedAt);
      failedClearly(f, ended, /rank 0 was killed by SIGKILL/);
      const warnings = [];
      let latest = null;
      try {
        latest = new Checkpoints(runDir, 3).latest((w) => warnings.push(w));
      } catch (error) {
        warnings.push(error.message);
      }
      f.fault.latest = latest?.step ?? null;
      // The previous checkpoint, or this one when its commit came before the kill: intact either way.
      const expected = [checkpoint - 4, checkpoint];
      f.check(warnings.length === 0 && expected.includes(latest?.step), `the latest checkpoint is ${latest?.step ?? 'none'}, expected step ${expected.join(' or ')}, intact${warnings.length ? `: ${warnings.join('; ')}` : ''}`);
      await resumeEqualsReference(f, runDir, refDir);
      return runDir;
    },
  },
  {
    n: 3,
    id: 'auto-restart',
    title: 'worker SIGKILL twice, worker.max_restarts=2',
    latency: 'kill → first step of the restarted worker',
    draw: () =>
      stepIn(5, STEPS - 14).chain((first) => fc.record({ first: fc.constant(first), second: stepIn(first - (first % 4) + 1, STEPS - 5) })),
    async trial(f, { first, second }, name, refDir) {
      const cli = trainCli(name, ['worker.max_restarts=2']);
      const pids = [];
      for (const step of [first, second]) {
        const previous = pids.at(-1);
        // After a restart the worker is another process; the replayed steps count from its checkpoint.
        if (!(await reached(f, cli, (done) => done >= step && workerPid(cli.runDir) !== previous, `the kill at step ${step}`))) return cli.runDir;
        const pid = workerPid(cli.runDir);
        pids.push(pid);
        const at = Date.now();
        process.kill(pid, 'SIGKILL');
        const back = await cli.whenStep(() => workerPid(cli.runDir) !== pid);
        if (back) f.latency_ms.push(back - at);
      }
      const ended = await cli.ended;
      f.check(ended.code === 0, `the CLI exited ${ended.code}: ${errorLine(ended.stderr)}`);
      const restarts = ended.stderr.match(/restarting every rank from the checkpoint of step \d+/g) ?? [];
      f.check(restarts.length === 2, `${restarts.length} restart warnings, not 2`);
      f.check(f.latency_ms.length === 2, 'the run did not train again after each kill');
      const diff = difference(cli.runDir, refDir);
      f.check(diff === null, `not equal to the reference: ${diff}`);
      return cli.runDir;
    },
  },
  {
    n: 4,
    id: 'worker-hang',
    title: 'worker SIGSTOP (hung)',
    latency: 'SIGSTOP → CLI exit (heartbeat timeout 3 s)',
    draw: () => fc.record({ step: stepIn(5, STEPS - 5) }),
    async trial(f, { step }, name, refDir) {
      const { cli, pid, noticedMs } = await signalWorkerAt(f, name, step, 'SIGSTOP', /rank 0 \(pid \d+ on .+\) stopped answering/);
      if (pid === null) return cli.runDir;
      f.check(noticedMs < HEARTBEAT_TIMEOUT_MS + 2000, `noticed after ${seconds(noticedMs)}, the timeout is ${seconds(HEARTBEAT_TIMEOUT_MS)}`);
      if (!f.check((await goneWithin(pid, 2000)) !== null, `the stopped worker (pid ${pid}) was left running after the CLI exited`)) process.kill(pid, 'SIGKILL');
      await resumeEqualsReference(f, cli.runDir, refDir);
      return cli.runDir;
    },
  },
  {
    n: 5,
    id: 'controller-kill',
    title: 'controller (CLI) SIGKILL at a random step',
    latency: 'kill → worker gone',
    draw: () => fc.record({ step: stepIn(5, STEPS - 5) }),
    async trial(f, { step }, name, refDir) {
      const cli = trainCli(name);
      if (!(await reached(f, cli, (done) => done === step, `step ${step}`))) return cli.runDir;
      const pid = workerPid(cli.runDir);
      cli.child.kill('SIGKILL');
      const gone = await goneWithin(pid, 3 * ORPHAN_LIMIT_MS);
      await cli.ended;
      if (gone === null) process.kill(pid, 'SIGKILL');
      else f.latency_ms.push(gone);
      f.check(gone !== null && gone < ORPHAN_LIMIT_MS, gone === null ? `the worker (pid ${pid}) still ran ${seconds(3 * ORPHAN_LIMIT_MS)} later` : `the worker took ${seconds(gone)} to go`);
      await resumeEqualsReference(f, cli.runDir, refDir, /run\.json still says "running"/);
      return cli.runDir;
    },
  },
  {
    n: 6,
    id: 'corrupt-checkpoint',
    title: 'newest checkpoint damaged after a stopped run',
    latency: null,
    draw: () =>
      fc.record({
        step: stepIn(6, STEPS - 5),
        file: fc.constantFrom('worker.pt', 'controller.json'),
        damage: fc.constantFrom('flip', 'truncate'),
        perMille: fc.integer({ min: 0, max: 999 }), // where in the file
      }),
    async trial(f, { step, file, damage, perMille }, name, refDir) {
      const cli = trainCli(name);
      if (!(await reached(f, cli, (done) => done === step, `step ${step}`))) return cli.runDir;
      cli.child.kill('SIGINT'); // Ctrl-C: stops after this step with a checkpoint
      const ended = await cli.ended;
      const runDir = cli.runDir;
      if (!f.check(ended.code === 130, `Ctrl-C: the CLI exited ${ended.code}, not 130: ${errorLine(ended.stderr)}`)) return runDir;
      const index = readJson(join(runDir, 'checkpoints', 'latest.json'));
      const fallback = index.committed.at(-2)?.step;
      const target = join(runDir, 'checkpoints', index.path, file);
      const bytes = readFileSync(target);
      const offset = Math.floor((perMille / 1000) * bytes.length);
      if (damage === 'flip') bytes[offset] ^= 0xff;
      writeFileSync(target, damage === 'flip' ? bytes : bytes.subarray(0, offset));
      Object.assign(f.fault, { newest: index.step, offset, size: bytes.length, fallback });
      const resumed = await resumeEqualsReference(f, runDir, refDir, new RegExp(`damaged.*using the checkpoint of step ${fallback} instead`));
      f.check(new RegExp(`resuming at step ${fallback}\\b`).test(resumed.stdout), `the resume did not start at step ${fallback}`);
      return runDir;
    },
  },
  {
    n: 7,
    id: 'disk-full',
    title: 'disk full mid-run (tmpfs), then freed',
    latency: 'disk full → CLI exit',
    draw: () => fc.record({ step: stepIn(5, STEPS - 5), leave: fc.constantFrom(0, 256 * 1024) }),
    trial: diskFullTrial,
  },
];

/**
 * SIGKILLs the worker at a moment of the checkpoint written into `partial`: its folder appears
 * ('folder'), the worker's temporary file appears in it ('temporary'), or worker.pt is renamed into
 * place ('worker.pt'). Watched with inotify (fs.watch), so the kill comes within a millisecond or so
 * of the event. Resolves with the time of the kill, or null when the run ends first.
 */
function killWhenCheckpointing(partial, moment, pid, cli) {
  const wanted = (name) => (moment === 'temporary' ? name?.startsWith('.worker.pt.') : name === 'worker.pt');
  return new Promise((resolve) => {
    const watchers = [];
    let settled = false;
    const settle = (at) => {
      if (settled) return;
      settled = true;
      for (const w of watchers) w.close();
      resolve(at);
    };
    const kill = () => {
      if (settled) return;
      const at = Date.now();
      process.kill(pid, 'SIGKILL');
      settle(at);
    };
    const watchInside = () => {
      if (settled || watchers.length > 1) return;
      try {
        watchers.push(watch(partial, (_, name) => wanted(name) && kill()));
        // What was written before the watch began counts too (the record says what the folder held).
        if (readdirSync(partial).some((name) => wanted(name) || name === 'worker.pt')) kill();
      } catch {
        kill(); // the folder is gone already (committed): as late as it gets
      }
    };
    const name = partial.split('/').pop();
    watchers.push(watch(join(partial, '..'), (_, entry) => entry === name && existsSync(partial) && (moment === 'folder' ? kill() : watchInside())));
    void cli.ended.then(() => settle(null));
  });
}

// ---------------------------------------------------------------------------------------------
// scenario 7: inside a user+mount namespace with a small tmpfs, as test/e2e/disk-full.test.ts does

const MOUNT = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"';

/** Why a tmpfs cannot be mounted here (no unprivileged user namespaces, no unshare), or null. */
async function tmpfsUnavailable() {
  const probe = mkdtempSync(join(tmpdir(), 'trqat-tmpfs-'));
  const result = await run('unshare', ['-rm', 'sh', '-c', MOUNT, 'sh', '64k', probe, 'true'], { allowFail: true }).catch((error) => ({ code: 1, stderr: error.message }));
  rmSync(probe, { recursive: true, force: true });
  return result.code === 0 ? null : `cannot mount a tmpfs in a user+mount namespace here (${result.stderr.trim() || 'unshare -rm failed'})`;
}

/** Outside the namespace: starts this script inside one for the trial, and takes its findings back. */
async function diskFullTrial(f, _plan, _name, _refDir, seed) {
  const mount = mkdtempSync(join(tmpdir(), 'trqat-tmpfs-'));
  const args = ['--budget', budget, '--out', join(dir, '..'), '--replay', `7:${seed}`, '--disk-full-in', mount];
  const result = await run('unshare', ['-rm', 'sh', '-c', MOUNT, 'sh', '32m', mount, process.execPath, SELF, ...args], { allowFail: true });
  rmSync(mount, { recursive: true, force: true });
  const last = result.stdout.trim().split('\n').pop();
  let inner = null;
  try {
    inner = JSON.parse(last);
  } catch {
    f.check(false, `harness: the trial in the namespace printed no record (exit ${result.code}): ${errorLine(result.stderr)}`);
    return null;
  }
  Object.assign(f.fault, inner.fault);
  f.latency_ms.push(...inner.latency_ms);
  f.reasons.push(...inner.reasons);
  return null; // the run folder was on the tmpfs: gone with the namespace
}

/** Inside the namespace: fills the tmpfs at `mount` once step `step` is done, leaving `leave` bytes. */
async function diskFullInside(f, { step, leave }, name, refDir, mount) {
  RUNS = join(mount, 'runs');
  const cli = trainCli(name);
  // A committed checkpoint to fall back on, and the step drawn: then the disk fills.
  if (!(await reached(f, cli, (done) => done >= step && existsSync(join(cli.runDir, 'checkpoints', 'latest.json')), `step ${step}`))) return null;
  const runDir = cli.runDir;
  const before = readJson(join(runDir, 'checkpoints', 'latest.json')).step;
  const pid = workerPid(runDir);
  const filler = join(mount, 'filler');
  fill(filler, leave);
  const at = Date.now();
  const ended = await cli.ended;
  f.latency_ms.push(ended.at - at);
  failedClearly(f, ended, /cannot write \S+: no space left on device/i);
  f.fault.file = /cannot write (\S+): /.exec(f.fault.error)?.[1]?.replace(mount, '<tmpfs>') ?? null; // the file the error names
  f.check((await goneWithin(pid, 2000)) !== null, `the worker (pid ${pid}) was left running`);
  const warnings = [];
  let latest = null;
  try {
    latest = new Checkpoints(runDir, 3).latest((w) => warnings.push(w));
  } catch (error) {
    warnings.push(error.message);
  }
  f.fault.latest = latest?.step ?? null;
  f.check(warnings.length === 0 && latest !== null && latest.step >= before, `the previous checkpoint (step ${before}) is not intact: latest ${latest?.step ?? 'none'}${warnings.length ? `: ${warnings.join('; ')}` : ''}`);
  rmSync(filler, { force: true });
  await resumeEqualsReference(f, runDir, refDir);
  return null;
}

// ---------------------------------------------------------------------------------------------
// the campaign

/** A trial's seed: the scenario's number and the trial's index, so each trial can be replayed alone. */
const seedOf = (scenario, index) => 1000 * scenario.n + index;
const planOf = (scenario, seed) => fc.sample(fc.noBias(scenario.draw()), { seed, numRuns: 1 })[0];
const scenarioNamed = (name) => SCENARIOS.find((s) => String(s.n) === name || s.id === name) ?? fail(`unknown scenario "${name}" (${SCENARIOS.map((s) => `${s.n} ${s.id}`).join(', ')})`);

function fail(message) {
  console.error(`reliability.mjs: ${message}`);
  process.exit(2);
}

/** Runs one trial; returns its record (what trials.jsonl holds). Never throws: a harness error is a lost trial. */
async function trial(scenario, seed, index, refDir, mount = null) {
  const plan = planOf(scenario, seed);
  const f = new Findings();
  const started = Date.now();
  const name = `${scenario.id}-${seed}`;
  let runDir = null;
  try {
    runDir = mount ? await diskFullInside(f, plan, name, refDir, mount) : await scenario.trial(f, plan, name, refDir, seed);
  } catch (error) {
    f.check(false, `harness: ${error.message.split('\n')[0]}`);
  }
  for (const cli of running) {
    f.check(false, `harness: the trial ended with a CLI still running (${cli.child.spawnargs.slice(2, 4).join(' ')}): killed`);
    cli.child.kill('SIGKILL');
    await cli.ended;
  }
  const outcome = f.reasons.length === 0 ? 'survived' : 'lost';
  if (outcome === 'survived' && runDir) rmSync(runDir, { recursive: true, force: true });
  return {
    scenario: scenario.id,
    n: scenario.n,
    index,
    seed,
    config: CONFIG_KEY,
    budget,
    plan,
    outcome,
    reasons: f.reasons,
    latency_ms: f.latency_ms,
    fault: f.fault,
    run_dir: outcome === 'lost' ? runDir : null,
    seconds: Math.round((Date.now() - started) / 100) / 10,
    finished: new Date().toISOString(),
  };
}

const readTrials = () =>
  existsSync(TRIALS_FILE)
    ? readFileSync(TRIALS_FILE, 'utf8')
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line))
    : [];

/** The table: per scenario, the trials of this config that are there. */
function report(scenarios, trials, skipped) {
  const rows = scenarios.map((scenario) => {
    const mine = trials.filter((t) => t.scenario === scenario.id);
    if (skipped.has(scenario.id) && mine.length === 0) return [`${scenario.n}. ${scenario.title}`, 0, '-', '-', 'n/a', `not tried: ${skipped.get(scenario.id)}`];
    const lost = mine.filter((t) => t.outcome === 'lost');
    const latencies = mine.flatMap((t) => t.latency_ms).map((ms) => ms / 1000);
    const why = new Map();
    for (const t of lost) for (const reason of t.reasons) why.set(reason, [...(why.get(reason) ?? []), t.seed]);
    const losses = [...why].map(([reason, seeds]) => `${reason} (seed ${seeds.join(', ')})`).join('; ');
    return [
      `${scenario.n}. ${scenario.title}`,
      mine.length,
      mine.length - lost.length,
      lost.length,
      scenario.latency && latencies.length > 0 ? `${medRange(latencies, 2)} s` : 'n/a',
      losses.replace(/\|/g, '\\|') || '-',
    ];
  });
  const latencyNotes = scenarios.filter((s) => s.latency).map((s) => `${s.n}: ${s.latency}`);
  return table(
    'Reliability: faults tried, survived, lost',
    ['scenario', 'tried', 'survived', 'lost', 'latency median [min–max]', 'what a loss was'],
    rows,
    [
      machineLine(),
      `Each trial: a real \`trqat train\` (ResNet-20 W2A2, synthetic data, ${STEPS} steps, checkpoint every 4, 1 thread, heartbeat timeout ${HEARTBEAT_TIMEOUT_MS / 1000} s), one fault at a moment drawn from the trial's seed, then \`trqat resume\`; survived = every check held and the metrics log (step and evaluation records without their clock fields) equals an uninterrupted run's, record for record.`,
      `Latency: ${latencyNotes.join('; ')}.`,
      `Trials of config ${CONFIG_KEY} in ${TRIALS_FILE}; replay one: node scripts/bench/reliability.mjs --${budget} --replay <scenario>:<seed>.`,
    ],
  );
}

// --- main ------------------------------------------------------------------------------------

if (opts.replay) {
  const [name, seedText] = opts.replay.split(':');
  const scenario = scenarioNamed(name);
  const seed = Number(seedText);
  if (!Number.isInteger(seed)) fail(`--replay ${opts.replay}: expected <scenario>:<seed>, e.g. 1:1003`);
  const refDir = await reference();
  const record = await trial(scenario, seed, null, refDir, opts.diskFullIn ?? null);
  if (!opts.diskFullIn) console.log(report([scenario], [record], new Map()));
  console.log(JSON.stringify(record));
  process.exit(0);
}

const scenarios = (opts.scenarios ?? (budget === 'tiny' ? '1,6' : SCENARIOS.map((s) => s.n).join(','))).split(',').map((s) => scenarioNamed(s.trim()));
const perScenario = Number(opts.trials ?? { tiny: 1, quick: 3, full: 20 }[budget]);
const skipped = new Map();
if (scenarios.some((s) => s.id === 'disk-full')) {
  const why = await tmpfsUnavailable();
  if (why) {
    skipped.set('disk-full', why);
    process.stderr.write(`reliability: skipping scenario 7 (disk-full): ${why}\n`);
  }
}
const done = readTrials().filter((t) => t.config === CONFIG_KEY);
const todo = scenarios
  .filter((s) => !skipped.has(s.id))
  .flatMap((s) => Array.from({ length: perScenario }, (_, index) => ({ scenario: s, index })))
  .filter(({ scenario, index }) => !done.some((t) => t.scenario === scenario.id && t.index === index));
process.stderr.write(`reliability: ${todo.length} trials to go (${done.length} there for config ${CONFIG_KEY}; ${perScenario} per scenario)\n`);
mkdirSync(RUNS, { recursive: true });
const refDir = todo.length > 0 ? await reference() : null;
const started = Date.now();
for (const [i, { scenario, index }] of todo.entries()) {
  const seed = seedOf(scenario, index);
  process.stderr.write(`reliability: [${i + 1}/${todo.length}] ${scenario.n} ${scenario.id}, trial ${index + 1}, seed ${seed}: `);
  const record = await trial(scenario, seed, index, refDir);
  appendFileSync(TRIALS_FILE, `${JSON.stringify(record)}\n`);
  process.stderr.write(`${record.outcome} (${record.seconds} s)${record.outcome === 'lost' ? `: ${record.reasons.join('; ')}` : ''}\n`);
}
if (todo.length > 0) process.stderr.write(`reliability: ${todo.length} trials in ${Math.round((Date.now() - started) / 1000)} s\n`);
const trials = readTrials().filter((t) => t.config === CONFIG_KEY && scenarios.some((s) => s.id === t.scenario));
console.log(report(scenarios, trials, skipped));
