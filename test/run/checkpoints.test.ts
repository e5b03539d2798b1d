import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpoints, CHECKPOINT_FORMAT } from '../../src/run/checkpoints.js';

function save(checkpoints: Checkpoints, step: number, top1: number | null = null) {
  const { staging, commit } = checkpoints.begin(step);
  writeFileSync(join(staging, 'worker.pt'), 'weights');
  return commit({ format: CHECKPOINT_FORMAT, step, total_steps: 100, controller: { K: 0, U: 0, last_step: step - 1 }, best_top1: null, elapsed_s: 0 }, top1);
}

const folders = (checkpoints: Checkpoints) => readdirSync(checkpoints.dir).filter((name) => name.startsWith('step-')).sort();

describe('Checkpoints', () => {
  it('keeps the newest, drops stale partial folders and the checkpoints of a timeline the run left, never the one just written', () => {
    const runDir = mkdtempSync(join(tmpdir(), 'trqat-ckpt-'));
    const checkpoints = new Checkpoints(runDir, 2);
    for (const step of [5, 10, 95]) save(checkpoints, step);
    // A crash left a partial folder, and the run continued from step 10 (step 95 was damaged, say):
    // the next commit drops step 95, which belongs to the timeline the run left.
    mkdirSync(join(checkpoints.dir, 'step-0000097.partial'));
    save(checkpoints, 20);
    expect(readdirSync(checkpoints.dir).sort()).toEqual(['latest.json', 'step-0000010', 'step-0000020']);
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

describe('verified checkpoints', () => {
  const fresh = (keep = 3, keepBest = false) => new Checkpoints(mkdtempSync(join(tmpdir(), 'trqat-ckpt-')), keep, keepBest);
  const index = (checkpoints: Checkpoints) => JSON.parse(readFileSync(join(checkpoints.dir, 'latest.json'), 'utf8'));
  const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

  it('latest.json records the sha256 of both halves of every kept checkpoint, in commit order', () => {
    const checkpoints = fresh(2);
    for (const step of [4, 8, 12]) save(checkpoints, step);
    const latest = index(checkpoints);
    const folder = join(checkpoints.dir, 'step-0000012');
    expect(latest).toMatchObject({ step: 12, path: 'step-0000012' });
    expect(latest.sha256).toEqual({ 'worker.pt': sha256(join(folder, 'worker.pt')), 'controller.json': sha256(join(folder, 'controller.json')) });
    expect(latest.committed.map((c: { step: number }) => c.step)).toEqual([8, 12]);
  });

  it('a damaged latest checkpoint is reported and the previous intact one is used; none intact is an error naming each', () => {
    const checkpoints = fresh();
    for (const step of [4, 8, 12]) save(checkpoints, step);
    writeFileSync(join(checkpoints.dir, 'step-0000012', 'worker.pt'), 'weightz'); // same size, one byte off
    rmSync(join(checkpoints.dir, 'step-0000008', 'controller.json'));
    const warnings: string[] = [];
    expect(checkpoints.latest((message) => warnings.push(message))).toEqual({ step: 4, path: join(checkpoints.dir, 'step-0000004') });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/step-0000012 is damaged: worker\.pt does not match the sha256 recorded at its commit; .*step-0000008 is incomplete: controller\.json is missing; using the checkpoint of step 4 instead/);
    // The run goes on from step 4: its next commit replaces the checkpoints of the timeline it left.
    save(checkpoints, 8);
    expect(folders(checkpoints)).toEqual(['step-0000004', 'step-0000008']);
    expect(checkpoints.latest()!.step).toBe(8);
    appendFileSync(join(checkpoints.dir, 'step-0000004', 'controller.json'), ' ');
    appendFileSync(join(checkpoints.dir, 'step-0000008', 'worker.pt'), 'x');
    expect(() => checkpoints.latest()).toThrow(/^no intact checkpoint in .*: .*step-0000008 is damaged: worker\.pt .*; .*step-0000004 is damaged: controller\.json /);
    expect(() => checkpoints.at(4)).toThrow(/step-0000004 is damaged/);
  });

  it('paths in latest.json and best.json are confined to step-NNNNNNN folders of checkpoints/', () => {
    const checkpoints = fresh(3, true);
    save(checkpoints, 4, 50);
    save(checkpoints, 8);
    const pointer = join(checkpoints.dir, 'latest.json');
    const good = index(checkpoints);
    for (const path of ['../..', '../../../etc', '/etc', 'step-0000004/../../x', 'step-0000004']) {
      writeFileSync(pointer, JSON.stringify({ ...good, path, committed: undefined }));
      expect(() => checkpoints.latest(), path).toThrow(/is not the checkpoint folder of step 8 \(only step-0000008 inside .*checkpoints is read\)/);
    }
    // With the list of commits, a bad pointer is skipped for the intact commits it lists.
    const [four, eight] = good.committed;
    writeFileSync(pointer, JSON.stringify({ ...good, path: '../..', committed: [four, { ...eight, path: '../..' }] }));
    const warnings: string[] = [];
    expect(checkpoints.latest((message) => warnings.push(message))!.step).toBe(4);
    expect(warnings[0]).toMatch(/"\.\.\/\.\." is not the checkpoint folder of step 8/);
    const best = join(checkpoints.dir, 'best.json');
    writeFileSync(best, JSON.stringify({ ...JSON.parse(readFileSync(best, 'utf8')), path: '../../..' }));
    expect(() => checkpoints.best()).toThrow(/the best checkpoint cannot be used: "\.\.\/\.\.\/\.\." is not the checkpoint folder of step 4/);
  });

  it('a damaged or empty latest.json is said, and the newest complete folder is used', () => {
    const checkpoints = fresh();
    save(checkpoints, 4);
    save(checkpoints, 8);
    for (const text of ['{}', 'not json', '{"step": "8", "path": "step-0000008"}']) {
      writeFileSync(join(checkpoints.dir, 'latest.json'), text);
      const warnings: string[] = [];
      expect(checkpoints.latest((message) => warnings.push(message))!.step).toBe(8);
      expect(warnings[0]).toMatch(/checkpoint index .*latest\.json (is damaged|is not valid JSON).*; using the checkpoint of step 8 instead/);
    }
    rmSync(join(checkpoints.dir, 'step-0000008'), { recursive: true });
    rmSync(join(checkpoints.dir, 'step-0000004'), { recursive: true });
    expect(() => checkpoints.latest()).toThrow(/no intact checkpoint in .*: checkpoint index .* is damaged/);
  });

  it('a checkpoint of an older trqat (no checksums) is still read, checked for completeness', () => {
    const checkpoints = fresh();
    save(checkpoints, 4);
    writeFileSync(join(checkpoints.dir, 'latest.json'), JSON.stringify({ step: 4, path: 'step-0000004' }));
    expect(checkpoints.latest()).toEqual({ step: 4, path: join(checkpoints.dir, 'step-0000004') });
    save(checkpoints, 8);
    expect(index(checkpoints).committed.map((c: { step: number; sha256?: unknown }) => [c.step, c.sha256 === undefined])).toEqual([
      [4, true],
      [8, false],
    ]);
  });
});
