import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpoints, CHECKPOINT_FORMAT } from '../src/run/checkpoints.js';

function save(checkpoints: Checkpoints, step: number) {
  const { staging, commit } = checkpoints.begin(step);
  writeFileSync(join(staging, 'worker.pt'), 'weights');
  return commit({ format: CHECKPOINT_FORMAT, step, total_steps: 100, controller: { K: 0, U: 0, last_step: step - 1 }, best_top1: null, elapsed_s: 0 });
}

describe('Checkpoints', () => {
  it('keeps the newest by step number, drops stale partial folders, never the one just written', () => {
    const runDir = mkdtempSync(join(tmpdir(), 'trqat-ckpt-'));
    const checkpoints = new Checkpoints(runDir, 2);
    for (const step of [5, 10, 95]) save(checkpoints, step);
    // A crash left a partial folder, and a resumed run continues from an earlier step.
    mkdirSync(join(checkpoints.dir, 'step-0000097.partial'));
    save(checkpoints, 20);
    expect(readdirSync(checkpoints.dir).sort()).toEqual(['latest.json', 'step-0000020', 'step-0000095']);
    expect(checkpoints.latest()).toEqual({ step: 20, path: join(checkpoints.dir, 'step-0000020') });
    expect(Checkpoints.readController(checkpoints.latest()!).controller.last_step).toBe(19);
  });

  it('refuses to commit a checkpoint the worker did not write', () => {
    const checkpoints = new Checkpoints(mkdtempSync(join(tmpdir(), 'trqat-ckpt-')), 3);
    const { commit } = checkpoints.begin(4);
    expect(() => commit({ format: CHECKPOINT_FORMAT, step: 4, total_steps: 8, controller: { K: 0, U: 0, last_step: 3 }, best_top1: null, elapsed_s: 0 })).toThrow(/did not write worker\.pt/);
    expect(checkpoints.latest()).toBeNull();
  });
});
