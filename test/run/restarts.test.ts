// Restarts with a fake run and fake checkpoints: no process, no folder.
import { describe, expect, it } from 'vitest';
import type { CheckpointRef, Checkpoints } from '../../src/run/checkpoints.js';
import { Restarts, type RestartHost } from '../../src/run/restarts.js';

const settle = () => new Promise((resolve) => setImmediate(resolve));

function setup(options: { restartable?: boolean; max?: number; latest?: CheckpointRef | null; resumeFrom?: CheckpointRef | null; stopFails?: boolean } = {}) {
  const done: string[] = [];
  const refusedCheckpoints: string[] = [];
  const checkpoints = {
    latest: () => options.latest ?? null,
    refuse: (ref: CheckpointRef, reason: string) => refusedCheckpoints.push(`${ref.path}: ${reason}`),
  } as unknown as Checkpoints;
  const host: RestartHost = {
    warn: (message) => done.push(`warn ${message}`),
    fail: (error) => done.push(`fail ${error.message}`),
    stopRanks: async (reason) => {
      done.push(`stop (${reason})`);
      if (options.stopFails) throw new Error('cannot kill');
    },
    startRanks: async (step) => {
      done.push(`start at ${step} from ${restarts.resumeFrom?.path ?? 'nothing'}`);
    },
  };
  const restarts = new Restarts(checkpoints, options.resumeFrom ?? null, options.restartable ?? true, options.max ?? 2, 60_000, host);
  return { restarts, done, refusedCheckpoints };
}

const STEP_4 = { step: 4, path: '/run/checkpoints/step-0000004' };
const STEP_8 = { step: 8, path: '/run/checkpoints/step-0000008' };

describe('Restarts', () => {
  it('restarts every rank from the latest checkpoint after a crash: warns, stops, then starts from it', async () => {
    const { restarts, done } = setup({ latest: STEP_4 });
    restarts.crash(new Error('rank 1 was killed by SIGKILL\n--- stderr ---'));
    await settle();
    expect(done).toEqual([
      'warn rank 1 was killed by SIGKILL; restarting every rank from the checkpoint of step 4 (restart 1 of at most 2)',
      'stop (restarting from the checkpoint of step 4)',
      `start at 4 from ${STEP_4.path}`,
    ]);
    expect(restarts.count).toBe(1);
    expect(restarts.resumeFrom).toEqual(STEP_4);
  });

  it('starts over from step 0 when there is no checkpoint yet', async () => {
    const { restarts, done } = setup({ latest: null });
    restarts.crash(new Error('rank 0 exited with code 1'));
    await settle();
    expect(done.slice(1)).toEqual(['stop (restarting from the start (no checkpoint yet))', 'start at 0 from nothing']);
  });

  it('fails past worker.max_restarts within the window, saying how many there were; later ones are allowed again', async () => {
    const { restarts, done } = setup({ max: 2 });
    restarts.crash(new Error('crash a'), 0);
    restarts.crash(new Error('crash b'), 1000);
    restarts.crash(new Error('crash c\nstderr'), 2000);
    await settle();
    expect(done.filter((d) => d.startsWith('fail'))).toEqual(['fail crash c (after 2 automatic restart(s) within 1 min; worker.max_restarts=2)\nstderr']);
    expect(restarts.count).toBe(2);
    expect(restarts.recent(60_500)).toBe(1); // the first has left the window
    restarts.crash(new Error('crash d'), 60_500);
    await settle();
    expect(restarts.count).toBe(3);
    expect(done.at(-3)).toMatch(/^warn crash d; restarting every rank from .* \(restart 2 of at most 2\)$/);
  });

  it('fails with the crash itself when restarts are off (worker.max_restarts=0) or the run did not start its ranks', async () => {
    for (const options of [{ max: 0 }, { restartable: false }]) {
      const { restarts, done } = setup(options);
      restarts.crash(new Error('rank 0 exited with code 1'));
      await settle();
      expect(done).toEqual(['fail rank 0 exited with code 1']);
      expect(restarts.count).toBe(0);
    }
  });

  it('falls back from a checkpoint the worker refuses to the newest intact one, without counting a restart', async () => {
    const { restarts, done, refusedCheckpoints } = setup({ resumeFrom: STEP_8, latest: STEP_4 });
    restarts.fallBack('worker.pt is not a checkpoint');
    await settle();
    expect(refusedCheckpoints).toEqual([`${STEP_8.path}: worker.pt is not a checkpoint`]);
    expect(done).toEqual(['stop (restarting from the checkpoint of step 4)', `start at 4 from ${STEP_4.path}`]);
    expect(restarts.count).toBe(0);
  });

  it('fails a run that cannot restart its ranks when its checkpoint is refused, naming it', async () => {
    const { restarts, done, refusedCheckpoints } = setup({ resumeFrom: STEP_8, latest: STEP_4, restartable: false });
    restarts.fallBack('a pickle that would run code');
    await settle();
    expect(refusedCheckpoints).toHaveLength(1);
    expect(done).toEqual([`fail checkpoint ${STEP_8.path} was refused by the worker: a pickle that would run code; resume the run again to continue from an earlier checkpoint`]);
  });

  it('fails the run when stopping the ranks fails, and does not start them', async () => {
    const { restarts, done } = setup({ latest: STEP_4, stopFails: true });
    restarts.crash(new Error('rank 0 exited with code 1'));
    await settle();
    expect(done.slice(1)).toEqual(['stop (restarting from the checkpoint of step 4)', 'fail cannot kill']);
    expect(restarts.resumeFrom).toBeNull();
  });
});
