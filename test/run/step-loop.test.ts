// StepLoop with fake ranks: no process, no socket; the controller is the real one.
import { describe, expect, it } from 'vitest';
import type { LayerInfo, LrBody } from '../../src/bridge/protocol.js';
import type { StepRecord } from '../../src/run/metrics.js';
import { StepLoop, StepMismatch, type Directives } from '../../src/run/step-loop.js';
import { TrController } from '../../src/schedules/controller.js';
import { tinyConfig } from '../support/helpers.js';

const LAYERS: LayerInfo[] = [
  { name: 'a', numel: 100, weight_bits: 2, act_bits: 2 } as LayerInfo,
  { name: 'b', numel: 50, weight_bits: 2, act_bits: 2 } as LayerInfo,
];

function loop(worldSize: number, total = 4, stopAt: number | null = null) {
  const config = tinyConfig();
  const controller = new TrController(config, total, LAYERS.map((l) => l.numel), 2);
  const reference = new TrController(config, total, LAYERS.map((l) => l.numel), 2);
  const answers: { ranks: number[]; lr: LrBody }[] = [];
  const records: StepRecord[] = [];
  const asked: number[] = [];
  const steps = new StepLoop(controller, LAYERS, total, 2, worldSize, 0, {
    directives: (t): Directives => (asked.push(t), { eval: false, save: null, stop: t === stopAt }),
    answer: (ranks, lr) => answers.push({ ranks, lr }),
    record: (record) => records.push(record),
  });
  return { steps, answers, records, asked, reference };
}

const stats = (loss: number, samples: number) => ({ loss, correct: samples / 2, samples });

describe('StepLoop with fake ranks', () => {
  it('decides a step once, when every rank has reported it, and answers all with the same decision', () => {
    const { steps, answers, asked, reference } = loop(2);
    expect(steps.report(1, { step: 0, counts: [3, 1], last: null })).toBeNull();
    expect(answers).toEqual([]); // rank 0 has not reported yet
    expect(steps.report(0, { step: 0, counts: [3, 1], last: null })).toBeNull();
    expect(asked).toEqual([0]);
    expect(answers).toHaveLength(1);
    expect(answers[0]!.ranks).toEqual([0, 1]);
    const expected = reference.step(0, [3, 1]);
    expect(answers[0]!.lr).toMatchObject({ step: 0, R: expected.R, K: expected.K, U: expected.U, lr_quant: expected.lr_quant, stop: false });
    expect(steps.next).toBe(1);
  });

  it('writes a step once every rank sent its statistics: the mean loss, summed samples', () => {
    const { steps, records } = loop(2);
    steps.report(0, { step: 0, counts: [3, 1], last: null });
    steps.report(1, { step: 0, counts: [3, 1], last: null });
    steps.report(0, { step: 1, counts: [0, 0], last: stats(2, 16) });
    expect(records).toEqual([]); // rank 1's statistics of step 0 are missing
    steps.report(1, { step: 1, counts: [0, 0], last: stats(1, 16) });
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ step: 0, loss: 1.5, samples: 32 });
  });

  it('refuses steps out of order, twice, past the end, and counts over a layer size', () => {
    const { steps } = loop(2, 2);
    expect(steps.report(0, { step: 1, counts: null, last: null })).toMatch(/out of order/);
    expect(steps.report(0, { step: 0, counts: [101, 0], last: null })).toMatch(/layer 'a' reports 101 transitions but has 100 weights/);
    expect(steps.report(0, { step: 0, counts: [1], last: null })).toMatch(/1 per-layer counts for 2 quantized layers/);
    expect(steps.report(0, { step: 0, counts: null, last: null })).toBeNull();
    expect(steps.report(0, { step: 0, counts: null, last: null })).toMatch(/already reported step 0/);
    expect(steps.report(0, { step: 2, counts: null, last: null })).toMatch(/past the end/);
  });

  it('throws StepMismatch when ranks disagree about the transitions', () => {
    const { steps } = loop(2);
    steps.report(0, { step: 0, counts: [3, 1], last: null });
    expect(() => steps.report(1, { step: 0, counts: [3, 2], last: null })).toThrow(StepMismatch);
  });

  it('lets the others go on when a rank leaves, and refuses steps after a stop', () => {
    const { steps, answers, records } = loop(2, 4, 0);
    steps.report(0, { step: 0, counts: null, last: null });
    steps.leave(1);
    expect(answers).toHaveLength(1);
    expect(answers[0]!.ranks).toEqual([0]);
    expect(answers[0]!.lr.stop).toBe(true);
    expect(steps.hasStopped).toBe(true);
    expect(steps.report(0, { step: 1, counts: null, last: null })).toMatch(/stopped the run at step 0/);
    steps.flush();
    expect(records.map((r) => r.step)).toEqual([0]);
  });
});
