// End to end: what happens when things go wrong, with the real worker over real ZeroMQ.
import { chmodSync, existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { Packr, Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { Dealer } from 'zeromq';
import { ConfigError } from '../../src/errors.js';
import { resolvePython } from '../../src/bridge/launcher.js';
import { PROTOCOL_VERSION } from '../../src/bridge/protocol.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import type { RunEvent } from '../../src/run/record.js';
import { RunFailure } from '../../src/run/run.js';
import { resume, startTraining, train } from '../../src/entry/train.js';
import { CLI, goneWithin, readRun, tinyConfig } from '../support/helpers.js';

/** The --set arguments that give the CLI the settings of a test config made by tinyConfig. */
function cliSets(config: ReturnType<typeof tinyConfig>): string[] {
  const keys = ['out_dir', 'data.name', 'data.synthetic.train_size', 'data.synthetic.image_size', 'data.batch_size', 'train.steps', 'train.eval_every', 'train.checkpoint_every', 'worker.device', 'worker.threads'];
  return keys.flatMap((key) => {
    const value = key.split('.').reduce<unknown>((node, part) => (node as Record<string, unknown>)[part], config);
    return ['--set', `${key}=${String(value)}`];
  });
}

/** Starts a run and applies `act` to the worker's pid once step `atStep` is logged; returns the error. */
async function failingRun(overrides: string[], atStep: number, act: (pid: number) => void): Promise<{ error: Error; runDir: string; took: number }> {
  const config = tinyConfig(['train.steps=400', 'train.eval_every=0', 'train.checkpoint_every=4', 'worker.max_restarts=0', ...overrides]);
  let runDir = '';
  let actedAt = 0;
  const onEvent = (event: RunEvent) => {
    if (event.type === 'started') runDir = event.runDir;
    if (event.type === 'step' && event.record.step === atStep) {
      actedAt = Date.now();
      act(readRun(runDir).info.ranks[0]!.pid);
    }
  };
  const error = await train(config, { onEvent }).then(
    () => new Error('the run should have failed'),
    (e: Error) => e,
  );
  return { error, runDir, took: Date.now() - actedAt };
}

describe('failures', () => {
  it('a worker killed twice is restarted from the last checkpoint each time; the run equals one that never failed', async () => {
    const straight = await train(tinyConfig(['train.steps=24', 'train.eval_every=8', 'train.checkpoint_every=4']));
    const warnings: string[] = [];
    const killed = new Set<number>();
    let runDir = '';
    const summary = await train(tinyConfig(['train.steps=24', 'train.eval_every=8', 'train.checkpoint_every=4']), {
      onEvent: (event) => {
        if (event.type === 'started') runDir = event.runDir;
        if (event.type === 'warning') warnings.push(event.message);
        // Twice: at step 6 (the last checkpoint is step 4) and at step 13 (after the checkpoint of step 12).
        if (event.type === 'step' && (event.record.step === 6 || event.record.step === 13) && !killed.has(event.record.step)) {
          killed.add(event.record.step);
          process.kill(readRun(runDir).info.ranks[0]!.pid, 'SIGKILL');
        }
      },
    });
    expect(summary.status).toBe('completed');
    expect(warnings.filter((w) => /restarting every rank/.test(w))).toEqual([
      expect.stringMatching(/rank 0 was killed by SIGKILL .*; restarting every rank from the checkpoint of step 4 \(restart 1 of at most 3\)/),
      expect.stringMatching(/restarting every rank from the checkpoint of step 12 \(restart 2 of at most 3\)/),
    ]);
    const a = readRun(straight.run_dir);
    const b = readRun(runDir);
    const numbers = (s: (typeof a.steps)[number]) => [s.step, s.k, s.K, s.R, s.U, s.lr_other, s.counts, s.loss];
    expect(b.steps.map(numbers)).toEqual(a.steps.map(numbers)); // continuous, and the same numbers
    expect(b.evals.map((e) => [e.step, e.top1, e.loss])).toEqual(a.evals.map((e) => [e.step, e.top1, e.loss]));
    expect(b.info.status).toBe('completed');
  }, 300_000); // two runs, and two restarts that start Python again

  it('a killed worker stops the run with the stderr tail, leaving the folder and last checkpoint intact', async () => {
    const { error, runDir, took } = await failingRun([], 6, (pid) => process.kill(pid, 'SIGKILL'));
    expect(error).toBeInstanceOf(RunFailure);
    expect(error.message).toMatch(/rank 0 was killed by SIGKILL while (training|finishing) step \d+/);
    expect(error.message).toMatch(/last lines of rank 0's stderr \(.*worker\.log\)/);
    expect(took).toBeLessThan(5000);
    const { info, steps } = readRun(runDir);
    expect(info.status).toBe('failed');
    expect(info.error).toMatch(/SIGKILL/);
    expect(info.checkpoint_step).toBe(4);
    expect(steps.length).toBeGreaterThanOrEqual(6);
    expect(readdirSync(join(runDir, 'checkpoints')).filter((name) => name.endsWith('.partial'))).toEqual([]);
    expect(existsSync(join(runDir, 'checkpoints', 'step-0000004', 'worker.pt'))).toBe(true);
  });

  it('a hung worker is noticed within the heartbeat timeout', async () => {
    const { error, runDir, took } = await failingRun(['worker.heartbeat_timeout_ms=1500'], 5, (pid) => process.kill(pid, 'SIGSTOP'));
    expect(error.message).toMatch(/rank 0 \(pid \d+ on .+\) stopped answering \(no message or heartbeat for 1\.\d s\)/);
    expect(took).toBeLessThan(4000);
    expect(readRun(runDir).info.status).toBe('failed');
  });

  it('a worker that speaks another protocol version is refused at the handshake, naming both versions', async () => {
    // The real worker, with its protocol version patched to the next one before it starts.
    const dir = mkdtempSync(join(tmpdir(), 'trqat-oldworker-'));
    const wrapper = join(dir, 'python');
    writeFileSync(
      wrapper,
      `#!/bin/sh\nexec "${resolvePython(null)}" -c "import trqat.protocol as p; p.PROTOCOL_VERSION = ${PROTOCOL_VERSION + 1}; from trqat.worker import main; raise SystemExit(main([]))"\n`,
    );
    chmodSync(wrapper, 0o755);
    const error = await train(tinyConfig([`worker.python=${wrapper}`])).then(
      () => new Error('the run should have failed'),
      (e: Error) => e,
    );
    expect(error.message).toContain(
      `refused at the handshake: protocol version mismatch: the worker speaks version ${PROTOCOL_VERSION + 1}, this controller speaks version ${PROTOCOL_VERSION}`,
    );
  });

  it('a missing Python interpreter is named, with the setting that fixes it', async () => {
    const error = await train(tinyConfig(['worker.python=/no/such/python'])).then(
      () => new Error('the run should have failed'),
      (e: Error) => e,
    );
    expect(error.message).toMatch(/rank 0 could not be started \(spawn \/no\/such\/python ENOENT\) \(set worker\.python or TRQAT_PYTHON/);
  });

  it('a model factory that does not import is a config error that names the reason', async () => {
    const error = await train(tinyConfig(['model.factory=no_such_package.models:build'])).then(
      () => new Error('the run should have failed'),
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/^model\.factory = 'no_such_package\.models:build': cannot import module 'no_such_package\.models' \(ModuleNotFoundError/);
    expect(error.message).not.toMatch(/Traceback/);
  });

  it('a diverging run stops with a clear error instead of training on NaN', async () => {
    const config = tinyConfig(['mode=baseline', 'optimizer.lr=1e30', 'train.steps=30', 'train.eval_every=0']);
    let runDir = '';
    const error = await train(config, { onEvent: (event) => void (event.type === 'started' && (runDir = event.runDir)) }).then(
      () => new Error('the run should have failed'),
      (e: Error) => e,
    );
    expect(error.message).toMatch(/training diverged: the loss of step \d+ is NaN; lower optimizer\.lr/);
    expect(readRun(runDir).info.status).toBe('failed');
  });

  it('garbage, strangers and clients on a managed run\'s socket are answered and do not disturb the run', async () => {
    const packr = new Packr({ useRecords: false });
    const replies: Record<string, unknown>[] = [];
    let stray: Promise<void> = Promise.resolve();
    const handle = await startTraining(tinyConfig(['train.steps=8']), {
      onEvent: (event) => {
        if (event.type !== 'started') return;
        stray = (async () => {
          const socket = new Dealer({ linger: 0, receiveTimeout: 5000 });
          socket.connect(event.endpoint);
          const hello = {
            protocol: PROTOCOL_VERSION, rank: 0, world_size: 1, pid: 1, hostname: 'h', device: 'cpu', device_name: 'cpu',
            torch_version: '2', python_version: '3', trqat_version: '0.1.0', role: 'client', secret: 'a guess',
          };
          const frames = [
            Buffer.from('not msgpack at all'),
            packr.pack({ v: PROTOCOL_VERSION, type: 'step', sid: 'intruder', seq: 0, body: { step: 'x' } }),
            packr.pack({ v: PROTOCOL_VERSION, type: 'hello', sid: 'stranger', seq: 0, body: hello }),
            packr.pack({ v: PROTOCOL_VERSION, type: 'hello', sid: 'client1', seq: 0, body: { ...hello, secret: handle.peerEnv['TRQAT_SECRET'] } }),
          ];
          for (const frame of frames) {
            await socket.send(frame);
            const [reply] = await socket.receive();
            replies.push(new Unpackr({ mapsAsObjects: true }).unpack(reply!) as Record<string, unknown>);
          }
          socket.close();
        })();
      },
    });
    const summary = await handle.done;
    await stray;
    expect(summary.status).toBe('completed');
    expect(replies.map((r) => r['type'])).toEqual(['error', 'error', 'reject', 'reject']);
    expect((replies[1]!['body'] as { message: string }).message).toMatch(/bad "step" message: step/);
    expect((replies[2]!['body'] as { reason: string }).reason).toMatch(/wrong or missing run secret/);
    expect((replies[3]!['body'] as { reason: string }).reason).toMatch(/managed training .* connect your script to "trqat run" or "trqat serve"/);
  });
});

describe('the CLI', () => {
  it('refuses a bad config with a clear message, exit code 2 and no run folder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trqat-badconfig-'));
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, `out_dir: ${join(dir, 'runs')}\noptimizer:\n  lr: fast\ntrian:\n  steps: 3\n`);
    const result = await execa('node', [CLI, 'train', path], { reject: false });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/invalid .*bad\.yaml/);
    expect(result.stderr).toMatch(/optimizer\.lr: .*expected number.*got "fast"/);
    expect(result.stderr).toMatch(/trian: unknown setting; did you mean train\? \(allowed here: .*train/);
    expect(existsSync(join(dir, 'runs'))).toBe(false);
  });

  it('a second Ctrl-C stops at once; the run says so, keeps its log, and a busy folder cannot be resumed twice', async () => {
    const config = tinyConfig(['train.steps=400', 'train.eval_every=0', 'train.checkpoint_every=4']);
    // Batches of 128 make a step take long enough (~0.2 s) that the second Ctrl-C lands mid-step.
    const child = execa('node', [CLI, 'train', '--set', `out_dir=${config.out_dir}`, '--set', 'data.name=synthetic', '--set', 'data.batch_size=128',
      '--set', 'data.synthetic.train_size=256', '--set', 'train.steps=400', '--set', 'train.checkpoint_every=4', '--set', 'train.log_every=1',
      '--set', 'worker.device=cpu', '--set', 'worker.threads=1'], { reject: false });
    let output = '';
    let sent = 0;
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const runDir = /run folder (.+)/.exec(output)?.[1]?.trim();
      if (sent === 0 && runDir && /step 6\/400/.test(output)) {
        sent = 1;
        // While the controller runs, its folder is locked.
        void resume(runDir).then(
          () => undefined,
          (error: Error) => {
            lockError = error.message;
            child.kill('SIGINT');
            setTimeout(() => child.kill('SIGINT'), 50);
          },
        );
      }
    });
    let lockError = '';
    const result = await child;
    expect(lockError).toMatch(/is in use by another trqat process \(pid \d+\)/);
    expect(result.exitCode).toBe(130);
    expect(result.stderr).toMatch(/stopping at once/);
    const runDir = /run folder (.+)/.exec(output)![1]!.trim();
    const { info, steps } = readRun(runDir);
    expect(info.status).toBe('stopped');
    expect(info.error).toMatch(/stopped at once/);
    expect(steps.length).toBeGreaterThanOrEqual(6);
    expect(existsSync(join(runDir, 'run.lock'))).toBe(false);
  });

  it('Ctrl-C stops with a checkpoint; trqat resume finishes the run', async () => {
    const config = tinyConfig(['train.steps=100', 'train.eval_every=0', 'train.checkpoint_every=0']);
    const child = execa('node', [CLI, 'train', ...cliSets(config), '--set', 'train.log_every=1'], { reject: false });
    let output = '';
    let interrupted = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (!interrupted && /step 5\/100/.test(output)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    const result = await child;
    expect(result.exitCode).toBe(130);
    expect(result.stderr).toMatch(/stopping after this step/);
    const runDir = /run folder: (.+)/.exec(result.stdout)![1]!.trim();
    expect(result.stdout).toMatch(/to continue: trqat resume/);
    const stoppedAt = readRun(runDir).info.checkpoint_step;
    expect(stoppedAt).toBeGreaterThanOrEqual(5);
    expect(stoppedAt).toBeLessThan(100);

    const resumed = await execa('node', [CLI, 'resume', runDir], { reject: false });
    expect(resumed.exitCode).toBe(0);
    expect(resumed.stdout).toMatch(new RegExp(`resuming at step ${stoppedAt}`));
    expect(resumed.stdout).toMatch(/done: step 100\/100, final top-1 \d+\.\d\d%/);
    expect(readRun(runDir).steps.map((s) => s.step)).toEqual(Array.from({ length: 100 }, (_, t) => t));
  }, 240_000); // two CLI processes, 100 steps in all

  it('a controller killed with SIGKILL leaves no worker behind; trqat resume says what happened and finishes the run', async () => {
    const config = tinyConfig(['train.steps=60', 'train.eval_every=0', 'train.checkpoint_every=4']);
    const child = execa('node', [CLI, 'train', ...cliSets(config), '--set', 'train.log_every=1'], { reject: false });
    let output = '';
    let killed: { runDir: string; pid: number; at: number } | null = null;
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const runDir = /run folder (\S+)/.exec(output)?.[1];
      if (!killed && runDir && /step 9\/60/.test(output)) {
        killed = { runDir, pid: readRun(runDir).info.ranks[0]!.pid, at: Date.now() };
        child.kill('SIGKILL');
      }
    });
    await child;
    const { runDir, pid, at } = killed!;
    expect(await goneWithin(pid, 10_000)).toBeLessThan(5000 - (Date.now() - at)); // the worker's output goes to worker.log, not to the CLI's pipes
    expect(readRun(runDir).info.status).toBe('running'); // nobody was left to say otherwise
    expect(existsSync(join(runDir, 'run.lock'))).toBe(true); // stale: its pid is gone

    const resumed = await execa('node', [CLI, 'resume', runDir], { reject: false });
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/run\.json still says "running": its controller ended without closing the run \(killed\?\)/);
    expect(readRun(runDir).steps.map((s) => s.step)).toEqual(Array.from({ length: 60 }, (_, t) => t));
    expect(readRun(runDir).info.status).toBe('completed');
  }, 240_000);

  it("a controller killed with SIGKILL ends the user's script under trqat run within seconds", async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-kill-'));
    const script = join(PACKAGE_ROOT, 'test', 'support', 'fixtures', 'client_script.py');
    const child = execa('node', [CLI, 'run', '--set', `out_dir=${out}`, '--', resolvePython(null), script, '--steps', '100000'], { reject: false });
    // Once the script has trained a few steps, its pid is in run.json: kill the controller then.
    let pid: number | undefined;
    for (const start = Date.now(); pid === undefined && Date.now() - start < 60_000; await new Promise((resolve) => setTimeout(resolve, 100))) {
      const runDir = readdirSync(out).map((name) => join(out, name))[0];
      if (runDir && existsSync(join(runDir, 'metrics.jsonl')) && existsSync(join(runDir, 'run.json')) && readRun(runDir).steps.length >= 3) pid = readRun(runDir).info.ranks?.[0]?.pid;
    }
    expect(pid).toBeDefined();
    child.kill('SIGKILL');
    // Timed from the kill: the CLI's output pipes stay open until the script exits, so awaiting the CLI comes after.
    expect(await goneWithin(pid!, 10_000)).toBeLessThan(5000);
    await child;
  }, 120_000);
});
