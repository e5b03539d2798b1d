// Managed workers forked from a fork server (python/trqat/forkserver.py; the suite runs its workers
// through one, test/support/forkserver-setup.ts) against workers in processes of their own: the same
// run, step for step. The semantics of the stand-in (signals, exit codes, the fallback) are tested in
// python/tests/test_forkserver.py.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { startForkServer } from '../../src/bridge/forkserver.js';
import { FORKSERVER_ENV, pythonCommand, pythonPath, resolvePython, workerCommand } from '../../src/bridge/launcher.js';
import { train } from '../../src/entry/train.js';
import { readRun, tinyConfig } from '../support/helpers.js';

describe('the fork server', () => {
  it('is used only with $TRQAT_FORKSERVER set, by the controller and by Python (trqat.forkserver.command) alike', async () => {
    const server = { [FORKSERVER_ENV]: '/tmp/s' };
    expect(workerCommand('py', {})).toEqual(['py', '-u', '-m', 'trqat.worker']);
    expect(workerCommand('py', server)).toEqual(['py', '-u', '-m', 'trqat.forkserver', 'run', 'trqat.worker']);
    expect(pythonCommand('py', 'dir/x.py', {})).toEqual(['py', '-u', 'dir/x.py']);
    expect(pythonCommand('py', 'dir/x.py', server)).toEqual(['py', '-u', '-m', 'trqat.forkserver', 'run', 'dir/x.py']);
    const cases = ['trqat.export', 'dir/x.py'].flatMap((target) => [{}, server].map((env) => ({ target, env })));
    const script = 'import json, sys; from trqat.forkserver import command; print(json.dumps([command(c["target"], c["env"]) for c in json.loads(sys.argv[1])]))';
    const { stdout } = await execa(resolvePython(null), ['-c', script, JSON.stringify(cases)], { env: { PYTHONPATH: pythonPath() } });
    expect(JSON.parse(stdout)).toEqual(cases.map(({ target, env }) => pythonCommand('py', target, env).slice(2)));
  });

  it('a run whose worker is forked from it equals a run whose worker is a process of its own, step for step', async () => {
    const suites = process.env[FORKSERVER_ENV];
    const server = await startForkServer(); // its own, so the test holds with TRQAT_TEST_FORKSERVER=0 too
    const runWith = async (socket: string | undefined) => {
      if (socket) process.env[FORKSERVER_ENV] = socket;
      else delete process.env[FORKSERVER_ENV];
      const summary = await train(tinyConfig(['train.steps=12', 'train.eval_every=6', 'train.checkpoint_every=0']));
      expect(summary.status).toBe('completed');
      return summary.run_dir;
    };
    try {
      const own = await runWith(undefined);
      const forked = await runWith(server.socket);
      const workerPid = (dir: string) => (JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as { ranks: { pid: number }[] }).ranks[0]!.pid;
      expect(server.log()).toContain(`forked ${workerPid(forked)} for trqat.worker`);
      expect(server.log()).not.toContain(`forked ${workerPid(own)} `);
      const numbers = (dir: string) => readRun(dir).steps.map(({ step, loss, counts, k, K, U, lr_quant }) => ({ step, loss, counts, k, K, U, lr_quant }));
      expect(numbers(forked)).toEqual(numbers(own));
      expect(readRun(forked).evals.map((e) => e.top1)).toEqual(readRun(own).evals.map((e) => e.top1));
    } finally {
      if (suites) process.env[FORKSERVER_ENV] = suites;
      else delete process.env[FORKSERVER_ENV];
      await server.stop();
    }
  });
});
