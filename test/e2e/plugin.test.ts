// End to end: users' own training scripts under the controller (`trqat run`, `trqat serve`, the
// serve() library API), with the real Python client over real ZeroMQ.
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { resolvePython } from '../../src/bridge/launcher.js';
import { PROTOCOL_VERSION } from '../../src/bridge/protocol.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import type { StepRecord } from '../../src/run/metrics.js';
import type { RunEvent, RunInfo } from '../../src/run/record.js';
import { serve } from '../../src/entry/serve.js';
import { checkEquations, CLI, CLIENT_SCRIPT, clientScript, type EquationConstants, readRun } from '../support/helpers.js';

const PYTHON = resolvePython(null);
/** "python" as a user types it: trqat run puts the project's .venv/bin first on the script's PATH. */
const PLAIN_PYTHON =
  existsSync(join(PACKAGE_ROOT, '.venv', 'bin', 'python')) && !process.env['VIRTUAL_ENV'] && !process.env['CONDA_PREFIX'] ? 'python' : PYTHON;
const EXAMPLE = join(PACKAGE_ROOT, 'examples', 'fashion_mnist_trqat.py');

/** --set arguments for a fast controller in a fresh out_dir. */
function sets(outDir: string, extra: string[] = []): string[] {
  return [
    `out_dir=${outDir}`,
    'name=plugin',
    'train.log_every=5',
    'tr.lambda=0.02',
    'tr.momentum=0.5',
    'tr.talr.eta=0.1',
    'worker.heartbeat_interval_ms=200',
    'worker.heartbeat_timeout_ms=3000',
    ...extra,
  ].flatMap((s) => ['--set', s]);
}

function runDirOf(stderr: string): string {
  const match = /run folder:? (\S+)/.exec(stderr);
  if (!match) throw new Error(`no run folder in:\n${stderr}`);
  return match[1]!;
}

/** The equation constants of a client run, from its run.json (sizes, plan, m and eta in force). */
function constantsOf(info: RunInfo, r0: number, u0: number): EquationConstants {
  const { momentum: m, eta } = info.plan!.controller;
  return { sizes: info.layers!.map((layer) => layer.numel), total: info.plan!.total_steps, r0, u0, m, eta };
}

describe('trqat run -- <your script>', () => {
  it('runs the shipped example end to end: the same metrics log as a managed run, exit status 0', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-plugin-'));
    const result = await execa(
      'node',
      [CLI, 'run', ...sets(out), '--', PLAIN_PYTHON, EXAMPLE, '--steps', '16', '--batch-size', '32', '--test-subset', '200'],
      { reject: false, env: { OMP_NUM_THREADS: '1' } }, // beside other tests, a second thread would spin-wait for a busy core
    );
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/test top-1 \d+\.\d\d%/); // the script's own output, untouched
    expect(result.stderr).toMatch(/\[trqat\] rank 0\/1 connected/);
    expect(result.stderr).toMatch(/\[trqat\] step 5\/16 .* k \S+ {2}K \S+ {2}R \S+ {2}U \S+/);
    expect(result.stderr).toMatch(/\[trqat\] done: step 16\/16, final top-1 \d+\.\d\d%/);
    const runDir = runDirOf(result.stderr);
    const { steps, evals, config } = readRun(runDir);
    const info = JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')) as RunInfo;
    expect(info).toMatchObject({ status: 'completed', kind: 'client', step: 16, exit: { code: 0, signal: null } });
    expect(info.layers!.map((l) => [l.name, l.kind])).toEqual([
      ['features.3', 'conv'],
      ['features.6', 'conv'],
      ['features.9', 'conv'],
      ['features.12', 'conv'],
    ]);
    expect(steps.map((s) => s.step)).toEqual(Array.from({ length: 16 }, (_, t) => t));
    checkEquations(steps, constantsOf(info, config.tr.r0, config.tr.talr.u0));
    for (const s of steps) {
      expect(s.samples).toBe(32);
      expect(Number.isFinite(s.loss)).toBe(true);
      expect(s.acc).toBeGreaterThanOrEqual(0);
    }
    expect(steps.some((s) => (s.k ?? 0) > 0)).toBe(true);
    // The evaluation the script reported, logged after the last step as in managed runs.
    const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ type: 'eval', step: 16, samples: 200 });
    expect(evals).toHaveLength(1);
    const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'));
    expect(summary).toMatchObject({ status: 'completed', step: 16, total_steps: 16, final_top1: evals[0]!.top1 });
  });

  it('a crashing script: the controller says how it ended, the run is failed, the exit status is the script’s', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-plugin-'));
    const crashed = await execa('node', [CLI, 'run', ...sets(out), '--', ...clientScript('--crash-at', '3')], { reject: false });
    expect(crashed.exitCode).toBe(1);
    expect(crashed.stderr).toMatch(/RuntimeError: boom at step 3/); // the script's own traceback
    expect(crashed.stderr).toMatch(/trqat: the training script exited with code 1 at step 3 of 6 \(rank 0 reported: RuntimeError: boom at step 3\)/);
    expect(crashed.stderr).toMatch(/trqat: the run is marked failed: /);
    const runDir = /the run is marked failed: (\S+)/.exec(crashed.stderr)![1]!;
    const { steps, info } = readRun(runDir);
    expect(info.status).toBe('failed');
    expect(info.error).toMatch(/exited with code 1/);
    expect(steps.map((s) => s.step)).toEqual([0, 1, 2]);

    // A script that completes and then exits with its own status: passed through as is.
    const exited = await execa('node', [CLI, 'run', ...sets(out), '--', ...clientScript('--exit-code', '7', '--no-close')], { reject: false });
    expect(exited.exitCode).toBe(7);
    expect(exited.stdout).toMatch(/script done after 6 steps/);
    expect(exited.stderr).toMatch(/\[trqat\] done: step 6\/6/);
    expect(exited.stderr).toMatch(/trqat: the training script ended with exit status 7 after the run ended \(completed\)/);

    // Ctrl-C (SIGINT sent to trqat alone, not from a terminal) is forwarded: the script stops, the run is "stopped".
    const child = execa('node', [CLI, 'run', ...sets(out), '--', ...clientScript('--steps', '100000')], { reject: false });
    let seen = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (/\[trqat\] step 10\//.test(seen) && !child.killed) child.kill('SIGINT');
    });
    const interrupted = await child;
    expect(interrupted.exitCode).toBe(130);
    expect(interrupted.stderr).toMatch(/KeyboardInterrupt/);
    expect(interrupted.stderr).toMatch(/\[trqat\] stopped: step \d+\/100000/);
    expect(readRun(runDirOf(interrupted.stderr)).info.status).toBe('stopped');

    // A command that cannot start.
    const missing = await execa('node', [CLI, 'run', ...sets(out), '--', join(out, 'no-such-program')], { reject: false });
    expect(missing.exitCode).toBe(127);
    expect(missing.stderr).toMatch(/the training script could not be started \(.*no-such-program.*ENOENT/);
  });

  it('the resume loop of docs/plugin.md: killed (SIGKILL) after a checkpoint and resumed, the steps are those of a run that never stopped', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-plugin-'));
    const checkpoint = join(out, 'checkpoint.pt');
    const script = clientScript('--steps', '16', '--save-every', '4');
    const straight = await execa('node', [CLI, 'run', ...sets(out), '--', ...script], { reject: false });
    expect(straight.exitCode, straight.stderr).toBe(0);
    // Killed after step 9: the last checkpoint holds step 8, so the resumed script redoes steps 8 and 9.
    const killed = await execa('node', [CLI, 'run', ...sets(out), '--', ...script, '--checkpoint', checkpoint, '--kill-after', '9'], { reject: false });
    expect(killed.exitCode, killed.stderr).toBe(137);
    const resumed = await execa('node', [CLI, 'run', ...sets(out), '--', ...script, '--checkpoint', checkpoint], { reject: false });
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resuming at step 8\n/);
    expect(resumed.stderr).toMatch(/\[trqat\] done: step 16\/16/);
    const numbers = (s: StepRecord) => [s.step, s.epoch, s.k, s.K, s.R, s.U, s.lr_quant, s.lr_other, s.counts, s.loss, s.acc, s.samples];
    const all = readRun(runDirOf(straight.stderr)).steps.map(numbers);
    expect(all).toHaveLength(16);
    expect(readRun(runDirOf(killed.stderr)).steps.slice(0, 9).map(numbers)).toEqual(all.slice(0, 9));
    expect(readRun(runDirOf(resumed.stderr)).steps.map(numbers)).toEqual(all.slice(8));
  });

  it('--nproc-per-node sets the torch.distributed contract and shares the cores out as torchrun does; without the option the environment is left alone', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-plugin-'));
    const names = ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'OMP_NUM_THREADS'];
    const printEnv = [PYTHON, '-c', `import json, os; print(json.dumps({k: os.environ.get(k) for k in ${JSON.stringify(names)}}))`];
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !names.includes(name)));
    const seen = async (options: string[], extra: Record<string, string> = {}) => {
      // No client connects, so trqat says nothing was recorded (exit 1); the environment is what matters here.
      const result = await execa('node', [CLI, 'run', ...options, ...sets(out), '--', ...printEnv], { reject: false, env: { ...env, ...extra }, extendEnv: false });
      return result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, string | null>);
    };
    const [one] = await seen(['--nproc-per-node', '1']);
    expect(one).toMatchObject({ RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '0', MASTER_ADDR: '127.0.0.1', OMP_NUM_THREADS: null });
    expect(Number(one!['MASTER_PORT'])).toBeGreaterThan(0);
    expect(await seen([])).toEqual([Object.fromEntries(names.map((name) => [name, null]))]);
    // Two copies share the cores (at least one thread each); a value the user set is kept.
    const two = await seen(['--nproc-per-node', '2']);
    expect(two.map((e) => [e['RANK'], e['OMP_NUM_THREADS']]).sort()).toEqual([0, 1].map((rank) => [String(rank), String(Math.max(1, Math.floor(availableParallelism() / 2)))]));
    expect((await seen(['--nproc-per-node', '2'], { OMP_NUM_THREADS: '3' })).map((e) => e['OMP_NUM_THREADS'])).toEqual(['3', '3']);
  });

  it('a client that speaks another protocol version is refused with both versions named', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-plugin-'));
    const other = PROTOCOL_VERSION + 1;
    const result = await execa('node', [CLI, 'run', ...sets(out), '--', ...clientScript('--protocol', String(other))], { reject: false });
    expect(result.exitCode).toBe(1);
    const mismatch = `protocol version mismatch: the client speaks version ${other}, this controller speaks version ${PROTOCOL_VERSION}`;
    // The script raises trqat.client.Rejected with the reason; the controller logs the refusal too.
    expect(result.stderr).toContain(`Rejected: the trqat controller at tcp://127.0.0.1:`);
    expect(result.stderr).toContain(`refused this client: ${mismatch}`);
    expect(result.stderr).toContain(`[trqat] warning: refused a message: ${mismatch}`);
    expect(result.stderr).toMatch(/the training script exited with code 1 before its first step/);
  });
});

describe('trqat serve', () => {
  it('prints the endpoint and the auth file; a script started elsewhere connects with it; serve exits when it is done', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-plugin-'));
    const server = execa('node', [CLI, 'serve', ...sets(out, ['train.steps=5'])], { reject: false });
    let stdout = '';
    const authFile = await new Promise<string>((resolve, reject) => {
      server.stdout!.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        const match = /connect a training script with: TRQAT_AUTH_FILE=(\S+) python/.exec(stdout);
        if (match) resolve(match[1]!);
      });
      void server.then(() => reject(new Error(`serve exited early:\n${stdout}`)));
    });
    expect(stdout).toMatch(/listening on tcp:\/\/127\.0\.0\.1:\d+/);
    expect(statSync(authFile).mode & 0o777).toBe(0o600); // the run's secret: readable by its owner only
    // Without the secret, the controller turns the script away.
    const stranger = await execa(PYTHON, [CLIENT_SCRIPT, '--steps', '2'], { env: { TRQAT_ENDPOINT: JSON.parse(readFileSync(authFile, 'utf8')).endpoint }, reject: false });
    expect(stranger.exitCode).toBe(1);
    expect(stranger.stderr).toMatch(/refused this client: wrong or missing run secret/);
    const script = await execa(PYTHON, [CLIENT_SCRIPT, '--steps', '9'], { env: { TRQAT_AUTH_FILE: authFile }, reject: false });
    expect(script.exitCode, script.stderr).toBe(0);
    expect(script.stderr).toMatch(/train.steps = 5; it wins over total_steps=9/);
    expect(script.stdout).toMatch(/script done after 5 steps/); // stopped by client.should_stop
    const result = await server;
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/done: step 5\/5, final top-1 \d+\.\d\d%/);
    expect(readRun(runDirOf(result.stdout)).steps.map((s) => s.step)).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('the serve() library API', () => {
  it('serves several ranks: each step decided once, logged once, the same LRs for every rank', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-plugin-'));
    const config = loadConfig(null, [`out_dir=${out}`, 'tr.lambda=0.02', 'tr.momentum=0.5', 'worker.heartbeat_interval_ms=200']);
    const events: RunEvent[] = [];
    const handle = await serve(config, { onEvent: (event) => events.push(event) });
    const ranks = [0, 1].map((rank) =>
      execa(PYTHON, [CLIENT_SCRIPT, '--steps', '6'], {
        env: { ...handle.peerEnv, RANK: String(rank), WORLD_SIZE: '2' },
        reject: false,
      }),
    );
    const done = await Promise.all(ranks);
    for (const rank of done) expect(rank.exitCode, rank.stderr).toBe(0);
    const lrs = done.map((rank) => /lr_quant (.+)/.exec(rank.stdout)![1]);
    expect(lrs[0]).toBe(lrs[1]);
    const summary = await handle.done;
    expect(summary).toMatchObject({ status: 'completed', step: 6, total_steps: 6 });
    const { steps, evals } = readRun(handle.runDir);
    const info = JSON.parse(readFileSync(join(handle.runDir, 'run.json'), 'utf8')) as RunInfo;
    expect(info.ranks.map((r) => r.rank)).toEqual([0, 1]);
    expect(steps.map((s) => s.step)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(evals).toHaveLength(1); // both ranks reported it; logged once
    checkEquations(steps, constantsOf(info, config.tr.r0, config.tr.talr.u0));
    expect(events.filter((e) => e.type === 'step')).toHaveLength(6);
    expect(events.filter((e) => e.type === 'rank')).toHaveLength(2);
  });

  it('stop(): clients get stop with their next LRs; the run ends as stopped', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-plugin-'));
    const config = loadConfig(null, [`out_dir=${out}`, 'train.steps=1000', 'worker.heartbeat_interval_ms=200']);
    const handle = await serve(config, {
      onEvent: (event) => {
        if (event.type === 'step' && event.record.step === 3) handle.stop();
      },
    });
    const script = await execa(PYTHON, [CLIENT_SCRIPT, '--steps', '1000'], { env: handle.peerEnv, reject: false });
    expect(script.exitCode, script.stderr).toBe(0);
    expect(script.stdout).toMatch(/script done after 5 steps/);
    const summary = await handle.done;
    expect(summary).toMatchObject({ status: 'stopped', step: 5, total_steps: 1000 });
    expect(readRun(handle.runDir).info.status).toBe('stopped');
  });

  it('stop() between steps (Ctrl-C on trqat serve): the next step gets its LRs with stop, the script ends cleanly', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-plugin-'));
    const config = loadConfig(null, [`out_dir=${out}`, 'train.steps=1000', 'worker.heartbeat_interval_ms=200']);
    const handle = await serve(config, {
      onEvent: (event) => {
        // Outside the step handler, as a signal handler would call it.
        if (event.type === 'step' && event.record.step === 3) setTimeout(() => handle.stop(), 0);
      },
    });
    const script = await execa(PYTHON, [CLIENT_SCRIPT, '--steps', '1000'], { env: handle.peerEnv, reject: false });
    expect(script.exitCode, script.stderr).toBe(0);
    const summary = await handle.done;
    expect(summary.status).toBe('stopped');
    expect(summary.step).toBeLessThan(1000);
    expect(readRun(handle.runDir).info.status).toBe('stopped');
  });
});
