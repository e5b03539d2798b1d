// End to end: the real Python worker over real ZeroMQ, on the CPU with the synthetic dataset.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ResolvedConfig } from '../../src/config/resolve.js';
import type { RunEvent, RunSummary } from '../../src/run/record.js';
import { resume, train } from '../../src/entry/train.js';
import { checkEquations, readRun, tinyConfig } from '../support/helpers.js';

/**
 * One straight run of tinyConfig(), made once for the two tests that read it (issue 20): the first
 * checks its numbers, the second compares a stopped-and-resumed run with it.
 */
let straightRun: Promise<{ config: ResolvedConfig; events: RunEvent[]; summary: RunSummary }> | undefined;
function straight(): Promise<{ config: ResolvedConfig; events: RunEvent[]; summary: RunSummary }> {
  straightRun ??= (async () => {
    const config = tinyConfig();
    const events: RunEvent[] = [];
    const summary = await train(config, { onEvent: (event) => events.push(event) });
    return { config, events, summary };
  })();
  return straightRun;
}

describe('a short TR-scheduled run', () => {
  it('logs k, K, R, U exactly as the equations give them from the logged counts', async () => {
    const { config, events, summary } = await straight();
    expect(summary.status).toBe('completed');
    // Start-up says what it is doing: the worker starting, then loading the data and building the model, before the first step.
    const started = events.findIndex((e) => e.type === 'started');
    expect(events.slice(0, started).flatMap((e) => (e.type === 'progress' ? [e.phase] : []))).toEqual(['worker', 'data', 'model']);
    const { steps, evals, info } = readRun(summary.run_dir);
    expect(info.status).toBe('completed');
    expect(steps.map((s) => s.step)).toEqual(Array.from({ length: 24 }, (_, t) => t));
    expect(evals.map((e) => e.step)).toEqual([8, 16, 24]);
    expect(summary.final_top1).toBe(evals[2]!.top1);

    const sizes = info.layers!.map((layer) => layer.numel);
    const { r0, talr } = config.tr;
    checkEquations(steps, { sizes, total: 24, r0, u0: talr.u0, m: config.tr.momentum!, eta: talr.eta! });
    for (const s of steps) {
      s.counts?.forEach((count, i) => expect(count).toBeLessThanOrEqual(sizes[i]!));
      expect(Number.isFinite(s.loss)).toBe(true);
      expect(s.samples).toBe(32);
    }
    // The weights did move: transitions happened, and training made progress.
    expect(steps.some((s) => (s.k ?? 0) > 0)).toBe(true);
    expect(steps.slice(-4).reduce((a, s) => a + s.loss, 0)).toBeLessThan(steps.slice(0, 4).reduce((a, s) => a + s.loss, 0));
    expect(events.filter((e) => e.type === 'checkpoint')).toHaveLength(3);
    expect(readdirSync(join(summary.run_dir, 'checkpoints')).sort()).toEqual(['latest.json', 'step-0000008', 'step-0000016', 'step-0000024']);
    // The run folder is its owner's alone (issue 19): 0700, and the controller's files 0600.
    const mode = (path: string) => statSync(path).mode & 0o777;
    expect(mode(summary.run_dir).toString(8)).toBe('700');
    for (const file of ['config.json', 'run.json', 'metrics.jsonl', 'summary.json', 'report.html', 'checkpoints/latest.json', 'checkpoints/step-0000024/controller.json']) {
      expect(mode(join(summary.run_dir, file)).toString(8), file).toBe('600');
    }
    for (const folder of ['checkpoints', 'checkpoints/step-0000024']) expect(mode(join(summary.run_dir, folder)).toString(8), folder).toBe('700');
  });

  it('resumes exactly where it stopped: same schedules, same numbers as a run that never stopped', async () => {
    const { summary: straightSummary } = await straight();
    const config = tinyConfig();
    const stop = new AbortController();
    const interrupted = await train(config, {
      signal: stop.signal,
      onEvent: (event) => {
        if (event.type === 'step' && event.record.step === 11) stop.abort();
      },
    });
    expect(interrupted.status).toBe('stopped');
    // Stopped mid-epoch at the next step, with a checkpoint there.
    expect(interrupted.step).toBe(13);
    expect(readRun(interrupted.run_dir).info).toMatchObject({ status: 'stopped', checkpoint_step: 13 });

    const resumed = await resume(interrupted.run_dir);
    expect(resumed.status).toBe('completed');
    const a = readRun(straightSummary.run_dir);
    const b = readRun(resumed.run_dir);
    expect(b.steps.map((s) => s.step)).toEqual(a.steps.map((s) => s.step));
    const numbers = (s: (typeof a.steps)[number]) => [s.k, s.K, s.R, s.U, s.lr_other, s.counts, s.loss];
    expect(b.steps.map(numbers)).toEqual(a.steps.map(numbers));
    expect(b.evals.map((e) => [e.step, e.top1, e.loss])).toEqual(a.evals.map((e) => [e.step, e.top1, e.loss]));

    await expect(resume(resumed.run_dir)).rejects.toThrow(/already completed/);
  });

  it('baseline mode: the quantized weights follow the ordinary LR and the TR is still measured', async () => {
    const summary = await train(tinyConfig(['mode=baseline', 'train.steps=8', 'train.checkpoint_every=0']));
    const { steps } = readRun(summary.run_dir);
    expect(steps).toHaveLength(8);
    for (const s of steps) {
      expect(s.lr_quant).toBe(s.lr_other);
      expect(s.lr_other).toBeCloseTo(0.1 * 0.5 * (1 + Math.cos((Math.PI * s.step) / 8)), 14);
      expect(s.R).toBeNull();
      expect(s.U).toBeNull();
    }
    expect(steps.slice(1).every((s) => s.k !== null)).toBe(true);
    expect(existsSync(join(summary.run_dir, 'checkpoints', 'step-0000008', 'worker.pt'))).toBe(true);
  });

  it('per-layer scope: every layer follows the target with its own K and U, sent as one LR per layer', async () => {
    const config = tinyConfig(['tr.scope=layer', 'train.steps=10', 'train.checkpoint_every=0', 'train.eval_every=0']);
    const summary = await train(config);
    const { steps, info } = readRun(summary.run_dir);
    const sizes = info.layers!.map((layer) => layer.numel);
    const m = config.tr.momentum!;
    const K = sizes.map(() => 0);
    const U = sizes.map(() => config.tr.talr.u0);
    for (const s of steps) {
      if (s.counts) {
        s.counts.forEach((count, i) => {
          K[i] = m * K[i]! + (1 - m) * (count / sizes[i]!);
          U[i] = Math.max(0, U[i]! + config.tr.talr.eta! * (s.R! - K[i]!));
        });
      }
      expect(s.lr_quant).toHaveLength(sizes.length);
      (s.lr_quant as number[]).forEach((u, i) => expect(u).toBeCloseTo(U[i]!, 14));
      s.K_layers!.forEach((k, i) => expect(k).toBeCloseTo(K[i]!, 14));
    }
    // Layers move at different rates, so their LRs part ways.
    const last = steps[steps.length - 1]!.lr_quant as number[];
    expect(new Set(last.map((u) => u.toFixed(12))).size).toBeGreaterThan(1);
  });
});
