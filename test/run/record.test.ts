// RunRecord with fake ranks and fake steps: no process, no socket; a temporary run folder.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { WorkerBody } from '../../src/bridge/protocol.js';
import { WriteError } from '../../src/errors.js';
import { MetricsLog, type EvalRecord, type StepRecord } from '../../src/run/metrics.js';
import { openRunRecord, RunRecord, type RankInfo, type RunEvent, type RunInfo, type RunPlan } from '../../src/run/record.js';
import { tinyConfig } from '../support/helpers.js';

const config = tinyConfig();

function freshDir(): string {
  return mkdtempSync(join(tmpdir(), 'trqat-record-'));
}

function open(runDir = freshDir(), resumeStep: number | null = null) {
  const events: RunEvent[] = [];
  const record = new RunRecord(runDir, config, 'managed', resumeStep, (event) => events.push(event));
  return { runDir, record, events };
}

const runJson = (runDir: string) => JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')) as RunInfo;
const lines = (runDir: string) => MetricsLog.read(join(runDir, 'metrics.jsonl')).map((r) => `${r.type} ${r.step}`);

function rank(n: number, pid = 100 + n): RankInfo {
  return { rank: n, pid, hostname: 'fake', device: 'cpu', device_name: 'cpu', torch_version: '2', trqat_version: '0.1.0' };
}

const PLAN: RunPlan = { total_steps: 4, steps_per_epoch: 2, eval_every: 2, checkpoint_every: 2, world_size: 1, controller: {} as RunPlan['controller'] };
const READY = { device: 'cpu', layers: [{ name: 'a', kind: 'linear', numel: 10, weight_bits: 2, act_bits: 2 }] } as unknown as WorkerBody<'ready'>;

function step(n: number, loss = 1): StepRecord {
  return { type: 'step', step: n, k: null, K: 0, R: 0.01, U: 0.1, lr_quant: 0.1, lr_other: 0.1, epoch: (n + 1) / 2, counts: null, loss, acc: 50, samples: 8, steps_per_s: 10, time: n };
}

/** An evaluation after `after` steps. */
function evaluation(after: number, top1: number, trackingError: number | null = 0.1): EvalRecord {
  return { type: 'eval', step: after, epoch: after / 2, top1, loss: 0.5, samples: 16, seconds: 1, tracking_error: trackingError, time: after };
}

describe('RunRecord', () => {
  it('starts a fresh run folder: config.json, and run.json at status running with no step and no rank', () => {
    const { runDir } = open();
    expect(JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(config)));
    expect(runJson(runDir)).toMatchObject({ kind: 'managed', status: 'running', step: 0, checkpoint_step: 0, plan: null, ranks: [] });
  });

  it('keeps one entry per rank, sorted: a rank that joins again replaces its old entry', () => {
    const { runDir, record } = open();
    record.addRank(rank(1));
    record.addRank(rank(0));
    record.addRank(rank(1, 999));
    expect(runJson(runDir).ranks.map((r) => [r.rank, r.pid])).toEqual([[0, 100], [1, 999]]);
  });

  it('records the plan at the start and every step in order, the next step in run.json', () => {
    const { runDir, record, events } = open();
    record.start(PLAN, READY, 0, 'ipc:///x', 10);
    expect(runJson(runDir)).toMatchObject({ plan: PLAN, device: 'cpu', step: 0 });
    expect(events[0]).toMatchObject({ type: 'started', startStep: 0, layers: 1, quantizedWeights: 10 });
    record.step(step(0));
    record.step(step(1));
    record.flush();
    expect(lines(runDir)).toEqual(['step 0', 'step 1']);
    expect(record.info.step).toBe(2);
    expect(events.map((e) => e.type)).toEqual(['started', 'step', 'step']);
  });

  it('logs an evaluation after the line of the step before it, even when it arrives first', () => {
    const { runDir, record, events } = open();
    record.start(PLAN, READY, 0, 'ipc:///x', 10);
    record.step(step(0));
    record.eval(evaluation(2, 40)); // after step 1, whose line is not written yet: held
    expect(events.map((e) => e.type)).toEqual(['started', 'step']);
    record.step(step(1));
    record.flush();
    expect(lines(runDir)).toEqual(['step 0', 'step 1', 'eval 2']);
    expect(events.map((e) => e.type)).toEqual(['started', 'step', 'step', 'eval']);
  });

  it('keeps the best top-1 and the last evaluation; warns when the tracking error is above the limit', () => {
    const { record, events } = open();
    record.start(PLAN, READY, 0, 'ipc:///x', 10);
    record.step(step(0));
    record.step(step(1));
    record.eval(evaluation(2, 60));
    record.step(step(2));
    record.step(step(3));
    record.eval(evaluation(4, 55, config.tr.warn_tracking_error + 0.1));
    expect(record.bestTop1).toBe(60);
    expect(record.lastEval?.top1).toBe(55);
    const warnings = events.filter((e) => e.type === 'warning');
    expect(warnings).toHaveLength(1);
    expect((warnings[0] as { message: string }).message).toMatch(/K is far from its target R \(tracking error 0\.60 > 0\.5\)/);
  });

  it('says whether the log holds every step before a checkpoint', () => {
    const { runDir, record, events } = open();
    expect(record.holds(0)).toBe(true);
    expect(record.holds(1)).toBe(false);
    record.start(PLAN, READY, 0, 'ipc:///x', 10);
    record.step(step(0));
    record.step(step(1));
    expect(record.holds(2)).toBe(true);
    expect(record.holds(3)).toBe(false);
    record.checkpoint({ step: 2, path: join(runDir, 'checkpoints', 'step-0000002') });
    expect(runJson(runDir).checkpoint_step).toBe(2);
    expect(events.at(-1)).toMatchObject({ type: 'checkpoint', checkpoint: { step: 2 } });
  });

  it('rewinds to a checkpoint: the later lines are dropped and the held evaluations forgotten', () => {
    const { runDir, record } = open();
    record.start(PLAN, READY, 0, 'ipc:///x', 10);
    for (const n of [0, 1, 2]) record.step(step(n));
    record.eval(evaluation(2, 40));
    record.eval(evaluation(4, 50)); // held: step 3 never came
    record.flush();
    record.rewind(2);
    expect(lines(runDir)).toEqual(['step 0', 'step 1', 'eval 2']);
    expect(record.info.step).toBe(2);
    expect(runJson(runDir).step).toBe(2);
    expect(record.lastEval).toBeNull();
    expect(record.holds(3)).toBe(false);
    record.step(step(2));
    record.step(step(3));
    record.end('completed', null);
    expect(lines(runDir)).toEqual(['step 0', 'step 1', 'eval 2', 'step 2', 'step 3']); // the forgotten evaluation is not written
  });

  it('ends a completed or stopped run with summary.json, writing held evaluations first', () => {
    const { runDir, record } = open();
    record.start(PLAN, READY, 0, 'ipc:///x', 10);
    record.step(step(0));
    record.eval(evaluation(2, 70)); // held: step 1's line is missing
    const summary = record.end('stopped', 0.25);
    expect(lines(runDir)).toEqual(['step 0', 'eval 2']);
    expect(runJson(runDir).status).toBe('stopped');
    expect(summary).toMatchObject({ run_dir: runDir, status: 'stopped', step: 1, total_steps: 4, final_top1: 70, best_top1: 70, final_loss: 0.5, tracking_error: 0.25 });
    expect(JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'))).toEqual(summary);
  });

  it('ends a failed run with its error in run.json and no summary', () => {
    const { runDir, record } = open();
    expect(record.end('failed', null, 'rank 0 exited with code 1')).toBeNull();
    expect(runJson(runDir)).toMatchObject({ status: 'failed', error: 'rank 0 exited with code 1' });
    expect(existsSync(join(runDir, 'summary.json'))).toBe(false);
  });

  it('rewrites run.json whole (atomically): no temporary is left, and every write is valid JSON', () => {
    const { runDir, record } = open();
    for (let n = 0; n < 20; n++) {
      record.addRank(rank(n % 3));
      expect(() => runJson(runDir)).not.toThrow();
    }
    expect(readdirSync(runDir).sort()).toEqual(['config.json', 'metrics.jsonl', 'run.json']);
  });

  it('resumes a folder from a checkpoint: running again, the old error gone, the lines after the checkpoint dropped', () => {
    const { runDir, record } = open();
    record.start(PLAN, READY, 0, 'ipc:///x', 10);
    for (const n of [0, 1, 2, 3]) record.step(step(n));
    record.eval(evaluation(2, 40));
    record.end('failed', null, 'a crash');
    const resumed = open(runDir, 2);
    expect(runJson(runDir)).toMatchObject({ status: 'running', checkpoint_step: 2, plan: PLAN });
    expect(runJson(runDir).error).toBeUndefined();
    expect(lines(runDir)).toEqual(['step 0', 'step 1', 'eval 2']);
    expect(resumed.record.holds(2)).toBe(true);
    expect(resumed.record.holds(3)).toBe(false);
  });

  it('refuses to resume a folder whose log does not reach the checkpoint, or that has no run.json', () => {
    const { runDir, record } = open();
    record.start(PLAN, READY, 0, 'ipc:///x', 10);
    record.step(step(0));
    record.end('failed', null, 'a crash');
    expect(() => open(runDir, 3)).toThrow(/history of steps 1-2 is missing/);
    expect(() => open(freshDir(), 2)).toThrow(/run\.json/);
  });

  it.skipIf(!existsSync('/dev/full'))('still records the end in run.json when the log cannot be written, then throws the WriteError', () => {
    const runDir = freshDir();
    symlinkSync('/dev/full', join(runDir, 'metrics.jsonl'));
    const { record } = open(runDir);
    record.start(PLAN, READY, 0, 'ipc:///x', 10);
    record.step(step(0)); // buffered
    expect(() => record.end('completed', null)).toThrow(WriteError);
    expect(runJson(runDir).status).toBe('completed');
    expect(existsSync(join(runDir, 'summary.json'))).toBe(false);
  });
});

describe('openRunRecord', () => {
  it('locks the folder with its pid, records the command, and unlocks', () => {
    const runDir = freshDir();
    const { record, unlock } = openRunRecord({ runDir, config, kind: 'client', checkpoint: null, command: ['python', 'train.py'] }, () => undefined, () => undefined);
    expect(readFileSync(join(runDir, 'run.lock'), 'utf8')).toBe(String(process.pid));
    expect(runJson(runDir)).toMatchObject({ kind: 'client', command: ['python', 'train.py'] });
    expect(record.info.command).toEqual(['python', 'train.py']);
    unlock();
    expect(existsSync(join(runDir, 'run.lock'))).toBe(false);
  });

  it('refuses a folder locked by another live process, and leaves it as it was', () => {
    const { runDir, record } = open();
    record.end('failed', null, 'a crash');
    writeFileSync(join(runDir, 'run.lock'), String(process.ppid));
    const resume = { runDir, config, kind: 'managed' as const, checkpoint: { step: 0, path: join(runDir, 'checkpoints/step-0000000') } };
    expect(() => openRunRecord(resume, () => undefined, () => undefined)).toThrow(/is in use by another trqat process \(pid \d+\)/);
    expect(readFileSync(join(runDir, 'run.lock'), 'utf8')).toBe(String(process.ppid));
    expect(runJson(runDir)).toMatchObject({ status: 'failed', error: 'a crash' });
  });

  it('removes a fresh folder it could not set up, unlocked; a resumed folder is kept', () => {
    const fresh = freshDir();
    mkdirSync(join(fresh, 'config.json')); // config.json cannot be written
    expect(() => openRunRecord({ runDir: fresh, config, kind: 'managed', checkpoint: null }, () => undefined, () => undefined)).toThrow(WriteError);
    expect(existsSync(fresh)).toBe(false);
    const resumed = freshDir(); // no run.json to resume from
    writeFileSync(join(resumed, 'keep.txt'), 'x');
    expect(() => openRunRecord({ runDir: resumed, config, kind: 'managed', checkpoint: { step: 2, path: join(resumed, 'checkpoints/step-0000002') } }, () => undefined, () => undefined)).toThrow(/run\.json/);
    expect(readdirSync(resumed)).toEqual(['keep.txt']); // the lock is released, nothing removed
  });
});
