import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpoints, CHECKPOINT_FORMAT } from '../src/run/checkpoints.js';

function save(checkpoints: Checkpoints, step: number, top1: number | null = null) {
  const { staging, commit } = checkpoints.begin(step);
  writeFileSync(join(staging, 'worker.pt'), 'weights');
  return commit({ format: CHECKPOINT_FORMAT, step, total_steps: 100, controller: { K: 0, U: 0, last_step: step - 1 }, best_top1: null, elapsed_s: 0 }, top1);
}

const folders = (checkpoints: Checkpoints) => readdirSync(checkpoints.dir).filter((name) => name.startsWith('step-')).sort();

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

  it("keep_best: the best evaluation's checkpoint survives pruning, beside the newest ones", () => {
    const checkpoints = new Checkpoints(mkdtempSync(join(tmpdir(), 'trqat-ckpt-')), 2, true);
    save(checkpoints, 10, 50);
    save(checkpoints, 20, 70);
    save(checkpoints, 30, 60);
    save(checkpoints, 35); // a checkpoint without an evaluation (Ctrl-C) is never the best
    save(checkpoints, 40, 70); // a tie keeps the earlier best
    expect(folders(checkpoints)).toEqual(['step-0000020', 'step-0000035', 'step-0000040']);
    expect(checkpoints.best()).toEqual({ step: 20, path: join(checkpoints.dir, 'step-0000020'), top1: 70 });
    expect(checkpoints.latest()!.step).toBe(40);
    save(checkpoints, 50, 80); // a new best; the old one is pruned like any other
    expect(folders(checkpoints)).toEqual(['step-0000040', 'step-0000050']);
    expect(checkpoints.best()!.step).toBe(50);
    save(checkpoints, 60, 10);
    save(checkpoints, 70, 10);
    expect(folders(checkpoints)).toEqual(['step-0000050', 'step-0000060', 'step-0000070']);
    expect(checkpoints.isNewBest(80)).toBe(false);
    expect(checkpoints.isNewBest(80.5)).toBe(true);
    expect(checkpoints.isNewBest(null)).toBe(false);
    // A second Checkpoints over the same folder (a resume) reads the pointer back.
    expect(new Checkpoints(join(checkpoints.dir, '..'), 2, true).best()!.step).toBe(50);
  });

  it('without keep_best there is no best pointer, and a resume that turns it off drops the pointer with its checkpoint', () => {
    const runDir = mkdtempSync(join(tmpdir(), 'trqat-ckpt-'));
    const plain = new Checkpoints(runDir, 1);
    save(plain, 10, 90);
    expect(plain.isNewBest(90)).toBe(false);
    expect(plain.best()).toBeNull();
    const kept = new Checkpoints(runDir, 1, true);
    save(kept, 20, 90);
    save(kept, 30, 50);
    expect(folders(kept)).toEqual(['step-0000020', 'step-0000030']);
    save(new Checkpoints(runDir, 1), 40, 99);
    expect(folders(kept)).toEqual(['step-0000040']);
    expect(existsSync(join(kept.dir, 'best.json'))).toBe(false);
  });

  it('finds a checkpoint by step, and names the steps there are when it is missing', () => {
    const checkpoints = new Checkpoints(mkdtempSync(join(tmpdir(), 'trqat-ckpt-')), 3);
    expect(checkpoints.steps()).toEqual([]);
    expect(() => checkpoints.at(5)).toThrow(/has no checkpoint of step 5; it has none/);
    for (const step of [8, 16]) save(checkpoints, step);
    expect(checkpoints.at(8)).toEqual({ step: 8, path: join(checkpoints.dir, 'step-0000008') });
    expect(() => checkpoints.at(12)).toThrow(/has no checkpoint of step 12; it has steps 8, 16/);
    rmSync(join(checkpoints.dir, 'step-0000016', 'controller.json'));
    expect(() => checkpoints.at(16)).toThrow(/step-0000016 is incomplete: controller.json is missing/);
  });
});
