// End to end: data-parallel runs with real torch.distributed (gloo on the CPU), real worker
// processes and real ZeroMQ; the authentication of a run's sessions.
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { Dealer } from 'zeromq';
import { Packr } from 'msgpackr';
import { loadConfig } from '../../src/config/load.js';
import { freePort, resolvePython } from '../../src/bridge/launcher.js';
import { PROTOCOL_VERSION } from '../../src/bridge/protocol.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import type { ResolvedConfig } from '../../src/config/resolve.js';
import type { RunEvent, RunSummary } from '../../src/run/record.js';
import { RunFailure } from '../../src/run/run.js';
import { serve } from '../../src/entry/serve.js';
import { resume, startTraining, train } from '../../src/entry/train.js';
import { alive, checkEquations, CLI, CLIENT_SCRIPT, clientScript, readRun, tinyConfig, within } from '../support/helpers.js';

const PYTHON = resolvePython(null);
const DDP_EXAMPLE = join(PACKAGE_ROOT, 'examples', 'fashion_mnist_ddp.py');
const TWO_RANKS = ['worker.nproc_per_node=2', 'worker.trace=true'];

interface TraceLine {
  step: number;
  counts?: number[] | null;
  lr_quant?: number | number[];
  lr_other?: number;
  evaluated?: { top1: number };
  state_sha256?: string;
}

function trace(runDir: string, rank: number): TraceLine[] {
  return readFileSync(join(runDir, 'ranks', `rank-${rank}.jsonl`), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as TraceLine);
}

/**
 * One straight two-rank run of tinyConfig(TWO_RANKS), made once for the two tests that read it
 * (issue 20): the first checks what both ranks did, the second compares an interrupted and resumed
 * run with it.
 */
let straightRun: Promise<{ config: ResolvedConfig; summary: RunSummary }> | undefined;
function straight(): Promise<{ config: ResolvedConfig; summary: RunSummary }> {
  straightRun ??= (async () => {
    const config = tinyConfig(TWO_RANKS);
    return { config, summary: await train(config) };
  })();
  return straightRun;
}

describe('data-parallel managed runs (torch.distributed, gloo)', () => {
  it('two ranks: one decision per step for both; every rank recorded the same counts and applied the same LRs', async () => {
    const { config, summary } = await straight();
    expect(summary.status).toBe('completed');
    const { steps, evals, info } = readRun(summary.run_dir);
    expect(info.ranks.map((r) => r.rank)).toEqual([0, 1]);
    expect(info.plan!.world_size).toBe(2);
    const sizes = info.layers!.map((layer) => layer.numel);
    checkEquations(steps, { sizes, total: 24, r0: config.tr.r0, u0: config.tr.talr.u0, m: config.tr.momentum!, eta: config.tr.talr.eta! });
    for (const s of steps) expect(s.samples).toBe(32); // the global batch: 16 per rank
    expect(evals.map((e) => [e.step, e.samples])).toEqual([[8, 128], [16, 128], [24, 128]]); // the test set once over both ranks
    const [zero, one] = [trace(summary.run_dir, 0), trace(summary.run_dir, 1)];
    const applied = (lines: TraceLine[]) => lines.filter((l) => l.lr_quant !== undefined).map((l) => [l.step, l.counts, l.lr_quant, l.lr_other]);
    expect(applied(zero)).toEqual(steps.map((s) => [s.step, s.counts, s.lr_quant, s.lr_other]));
    expect(applied(one)).toEqual(applied(zero));
    const states = (lines: TraceLine[]) => lines.filter((l) => l.state_sha256).map((l) => l.state_sha256);
    expect(states(zero)).toHaveLength(3);
    expect(states(one)).toEqual(states(zero)); // identical weights, scales and BatchNorm statistics at every evaluation
    expect(readdirSync(summary.run_dir)).toEqual(expect.arrayContaining(['worker-0.log', 'worker-1.log']));
  });

  it('an interrupted two-rank run, resumed, is bit-identical to one that never stopped', async () => {
    const { summary: straightSummary } = await straight();
    const stop = new AbortController();
    const interrupted = await train(tinyConfig(TWO_RANKS), {
      signal: stop.signal,
      onEvent: (event) => {
        if (event.type === 'step' && event.record.step === 10) stop.abort();
      },
    });
    expect(interrupted.status).toBe('stopped');
    const resumed = await resume(interrupted.run_dir);
    expect(resumed.status).toBe('completed');
    const a = readRun(straightSummary.run_dir);
    const b = readRun(resumed.run_dir);
    const numbers = (s: (typeof a.steps)[number]) => [s.step, s.k, s.K, s.R, s.U, s.lr_other, s.counts, s.loss, s.acc];
    expect(b.steps.map(numbers)).toEqual(a.steps.map(numbers));
    expect(b.evals.map((e) => [e.step, e.top1, e.loss])).toEqual(a.evals.map((e) => [e.step, e.top1, e.loss]));
  });

  it('a rank that dies stops the whole run within seconds, with its stderr; nothing is left running and resume continues', async () => {
    const config = tinyConfig([...TWO_RANKS, 'train.steps=60', 'train.eval_every=0', 'train.checkpoint_every=4', 'worker.max_restarts=0']);
    let runDir = '';
    let killedAt = 0;
    const pids: number[] = [];
    const error = await train(config, {
      onEvent: (event: RunEvent) => {
        if (event.type === 'started') runDir = event.runDir;
        if (event.type === 'step' && event.record.step === 6) {
          pids.push(...readRun(runDir).info.ranks.map((r) => r.pid));
          killedAt = Date.now();
          process.kill(pids[1]!, 'SIGKILL');
        }
      },
    }).then(
      () => new Error('the run should have failed'),
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(RunFailure);
    expect(Date.now() - killedAt).toBeLessThan(15_000);
    expect(error.message).toMatch(/rank 1 was killed by SIGKILL while (training|finishing) step \d+/);
    expect(error.message).toMatch(/last lines of rank 1's stderr \(.*worker-1\.log\)/);
    expect(pids.some(alive)).toBe(false); // rank 0, stuck in an all-reduce with a dead peer, was stopped too
    const { info } = readRun(runDir);
    expect(info.status).toBe('failed');
    expect(info.checkpoint_step).toBe(4);
    const resumed = await resume(runDir);
    expect(resumed).toMatchObject({ status: 'completed', step: 60 });
    expect(readRun(runDir).steps.map((s) => s.step)).toEqual(Array.from({ length: 60 }, (_, t) => t));
  });

  it('trqat run: a copy killed with SIGKILL is the cause: the exit status is 137 and run.json records SIGKILL, not the SIGTERM that stopped the other copy', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-kill9-'));
    const result = await execa(
      'node',
      [CLI, 'run', '--nproc-per-node', '2', '--set', `out_dir=${out}`, '--set', 'worker.heartbeat_interval_ms=200', '--', ...clientScript('--steps', '100000', '--kill-after', '5', '--kill-rank', '1')],
      { reject: false },
    );
    expect(result.exitCode, result.stderr).toBe(137);
    expect(result.stderr).toMatch(/the training script was killed by SIGKILL/);
    const runDir = join(out, readdirSync(out)[0]!);
    const { info } = readRun(runDir);
    expect(info.status).toBe('failed');
    expect(info.exit).toEqual({ code: null, signal: 'SIGKILL' });
  });

  it('the cause of a failure is the rank that died, even when another rank\'s error (its collective broke) reaches the controller first', async () => {
    const config = tinyConfig([...TWO_RANKS, 'train.steps=200', 'train.eval_every=0', 'worker.max_restarts=0']);
    let runDir = '';
    let killed = false;
    const error = await train(config, {
      onEvent: (event: RunEvent) => {
        if (event.type === 'started') runDir = event.runDir;
        if (event.type === 'step' && event.record.step === 6 && !killed) {
          killed = true;
          process.kill(readRun(runDir).info.ranks[1]!.pid, 'SIGKILL');
          // The controller is busy while rank 0's all-reduce fails: its error and rank 1's exit arrive together, in either order.
          for (const until = Date.now() + 2000; Date.now() < until; ); // below the heartbeat timeout (3 s)
        }
      },
    }).then(
      () => new Error('the run should have failed'),
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(RunFailure);
    expect(error.message.split('\n')[0]).toMatch(/^rank 1 was killed by SIGKILL while/);
  });

  it('ranks that ask for different plans are refused when they join, naming both values; different batch sizes are warned about once', async () => {
    const run = (args: string[]) => {
      const out = mkdtempSync(join(tmpdir(), 'trqat-plans-'));
      return execa('node', [CLI, 'run', '--nproc-per-node', '2', '--set', `out_dir=${out}`, '--set', 'worker.heartbeat_interval_ms=200', '--', ...clientScript(...args)], { reject: false });
    };
    const steps = await run(['--steps', '10', '--rank1-steps', '12']);
    expect(steps.exitCode).not.toBe(0);
    // Whichever rank is ready first makes the plan; the other is refused.
    expect(steps.stderr).toMatch(/rank (1 asks for total_steps=12, rank 0 for total_steps=10|0 asks for total_steps=10, rank 1 for total_steps=12): every rank must run the same plan/);
    const batches = await run(['--steps', '10', '--rank1-samples', '32']);
    expect(batches.exitCode, batches.stderr).toBe(0);
    const warnings = batches.stderr.split('\n').filter((line) => /different batch sizes/.test(line));
    expect(warnings).toEqual([expect.stringMatching(/ranks trained step 0 on different batch sizes \(rank 0: 64 samples, rank 1: 32\)/)]);
  });

  it('a hung rank is noticed within the heartbeat timeout and the run ends with every process gone', async () => {
    const config = tinyConfig([...TWO_RANKS, 'train.steps=200', 'train.eval_every=0', 'worker.heartbeat_timeout_ms=2000', 'worker.max_restarts=0']);
    let runDir = '';
    let hungAt = 0;
    const pids: number[] = [];
    const error = await train(config, {
      onEvent: (event: RunEvent) => {
        if (event.type === 'started') runDir = event.runDir;
        if (event.type === 'step' && event.record.step === 4) {
          pids.push(...readRun(runDir).info.ranks.map((r) => r.pid));
          hungAt = Date.now();
          process.kill(pids[1]!, 'SIGSTOP');
        }
      },
    }).then(
      () => new Error('the run should have failed'),
      (e: Error) => e,
    );
    expect(error.message).toMatch(/rank 1 \(pid \d+ on .+\) stopped answering \(no message or heartbeat for [23]\.\d s\)/);
    expect(Date.now() - hungAt).toBeLessThan(15_000);
    expect(pids.some(alive)).toBe(false);
  });

  it('ranks started by a launcher of their own (worker.launch=external) join with the auth file and the torch.distributed contract', async () => {
    const config = tinyConfig(['worker.launch=external', 'train.steps=8', 'train.eval_every=4']);
    const handle = await startTraining(config);
    const authFile = join(handle.runDir, 'auth.json');
    expect(statSync(authFile).mode & 0o777).toBe(0o600);
    const masterPort = await freePort();
    // What torchrun or srun would start on each node: no TRQAT_SECRET, only the auth file and the contract.
    const ranks = [0, 1].map((rank) =>
      execa(PYTHON, ['-m', 'trqat.worker'], {
        env: {
          PYTHONPATH: join(PACKAGE_ROOT, 'python'),
          TRQAT_AUTH_FILE: authFile,
          RANK: String(rank),
          WORLD_SIZE: '2',
          LOCAL_RANK: String(rank),
          MASTER_ADDR: '127.0.0.1',
          MASTER_PORT: String(masterPort),
        },
        reject: false,
      }),
    );
    const summary = await handle.done;
    for (const rank of await Promise.all(ranks)) expect(rank.exitCode, rank.stderr).toBe(0);
    expect(summary).toMatchObject({ status: 'completed', step: 8 });
    expect(readRun(handle.runDir).info.ranks.map((r) => r.rank)).toEqual([0, 1]);
  });
});

describe('data-parallel scripts under trqat run', () => {
  it('the DDP example on two processes (trqat run --nproc-per-node 2): every rank got the same LRs and ended with the same model', async () => {
    for (const order of [[], ['--ddp-first']]) {
      const out = mkdtempSync(join(tmpdir(), 'trqat-ddp-'));
      const record = mkdtempSync(join(tmpdir(), 'trqat-ddp-record-'));
      const result = await execa(
        'node',
        [CLI, 'run', '--nproc-per-node', '2', '--set', `out_dir=${out}`, '--set', 'train.log_every=4', '--set', 'worker.heartbeat_interval_ms=200',
          '--', PYTHON, DDP_EXAMPLE, '--steps', '8', '--batch-size', '64', '--test-subset', '200', '--record', record, ...order],
        { reject: false },
      );
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stderr).toMatch(/\[trqat\] rank 1\/2 connected/);
      expect(result.stdout).toMatch(/test top-1 \d+\.\d\d%/);
      const runDir = /run folder:? (\S+)/.exec(result.stderr)![1]!;
      const { steps, info } = readRun(runDir);
      expect(info.status).toBe('completed');
      const lines = [0, 1].map((rank) => readFileSync(join(record, `rank-${rank}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l)));
      const applied = (rank: number) => lines[rank]!.filter((l) => 'step' in l).map((l) => [l.step, l.counts, l.lr_quant, l.lr_other]);
      expect(applied(0)).toEqual(steps.map((s) => [s.step, s.counts, s.lr_quant, s.lr_other]));
      expect(applied(1)).toEqual(applied(0));
      // The activation scales were set from the first batch of both ranks, and the weights stayed in step.
      expect(lines[1]!.at(-1)).toEqual(lines[0]!.at(-1));
      for (const s of steps) expect(s.samples).toBe(64);
    }
  });

  it('ranks that disagree stop the run with an error naming the ranks, the step and the first layer that differs', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-mismatch-'));
    const config = loadConfig(null, [`out_dir=${out}`, 'worker.heartbeat_interval_ms=200']);
    const handle = await serve(config);
    const ranks = [0, 1].map((rank) =>
      execa(PYTHON, [CLIENT_SCRIPT, '--steps', '6', '--seed-by-rank'], { env: { ...handle.peerEnv, RANK: String(rank), WORLD_SIZE: '2' }, reject: false }),
    );
    const error = await handle.done.then(
      () => new Error('the run should have failed'),
      (e: Error) => e,
    );
    expect(error.message).toMatch(/ranks 0 and 1 report different transitions at step 1 \(first difference: layer '\d+', \d+ vs \d+\): data-parallel ranks must hold identical weights/);
    for (const rank of await Promise.all(ranks)) {
      expect(rank.exitCode).not.toBe(0);
      expect(rank.stderr).toMatch(/the trqat controller ended the run: ranks 0 and 1 report different transitions/);
    }
    expect(readRun(handle.runDir).info.status).toBe('failed');
  });
});

describe('authentication', () => {
  it('beyond loopback the run speaks CURVE: its own script connects with the auth file, a peer without the key gets no answer', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-curve-'));
    const config = loadConfig(null, [`out_dir=${out}`, 'bridge.endpoint=tcp://0.0.0.0:*', 'train.steps=4', 'worker.heartbeat_interval_ms=200']);
    const handle = await within(serve(config), 30_000, 'serve()');
    const authFile = join(handle.runDir, 'auth.json');
    const auth = JSON.parse(readFileSync(authFile, 'utf8')) as { endpoint: string; secret: string; server_key: string | null };
    expect(auth.server_key).toMatch(/^.{40}$/); // a Z85 CURVE public key, made for this run
    expect(statSync(authFile).mode & 0o777).toBe(0o600);
    const port = /:(\d+)$/.exec(handle.endpoint)![1]!;

    // A peer that knows the secret but not the server key: the CURVE handshake fails, nothing is answered.
    // sendTimeout: a DEALER with no peer that completed the handshake would queue or wait for one forever
    const stranger = new Dealer({ linger: 0, receiveTimeout: 1500, sendTimeout: 1500 });
    stranger.connect(`tcp://127.0.0.1:${port}`);
    const hello = {
      protocol: PROTOCOL_VERSION, role: 'client', rank: 0, world_size: 1, pid: 1, hostname: 'h', device: 'cpu', device_name: 'cpu',
      torch_version: '2', python_version: '3', trqat_version: '0.1.0', secret: auth.secret,
    };
    // refused (no peer) or sent and unanswered: either way nothing reaches the run
    const sent = await within(
      stranger.send(new Packr({ useRecords: false }).pack({ v: PROTOCOL_VERSION, type: 'hello', sid: 'stranger', seq: 0, body: hello })).then(() => true, () => false),
      5_000,
      "the stranger's send",
    );
    // Raced with a timer of our own: under load the socket's receiveTimeout alone is not to be relied on.
    const answer = await Promise.race([
      sent
        ? stranger.receive().then(
            () => 'answered',
            () => 'no answer',
          )
        : Promise.resolve('no answer'),
      new Promise<string>((resolve) => setTimeout(() => resolve('no answer'), 3000)),
    ]);
    expect(answer).toBe('no answer');
    stranger.close();

    // Bounded, so that a script that cannot connect fails the test with its own stderr, not a timeout.
    const script = await execa(PYTHON, [CLIENT_SCRIPT, '--steps', '4'], {
      env: { TRQAT_AUTH_FILE: authFile, TRQAT_HEARTBEAT_MS: '200', TRQAT_CONNECT_TIMEOUT_MS: '60000' },
      reject: false,
      timeout: 150_000,
    });
    expect(script.exitCode, `${script.shortMessage ?? ''}\n${script.stderr}`).toBe(0);
    expect(await within(handle.done, 60_000, 'the run ending after its script exited')).toMatchObject({ status: 'completed', step: 4 });
    expect(existsSync(join(handle.runDir, 'metrics.jsonl'))).toBe(true);
  }, 240_000); // one Python process on a machine that may be busy with the other test files
});
