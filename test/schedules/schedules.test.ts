import { describe, expect, it } from 'vitest';
import { scheduleSchema } from '../../src/config/schema.js';
import { Schedule } from '../../src/schedules/schedule.js';
import { RunningTr } from '../../src/schedules/running-tr.js';
import { AdditiveTalr } from '../../src/schedules/talr.js';

const config = (overrides: object) => scheduleSchema.parse(overrides);

describe('Schedule', () => {
  it('cosine goes from base to final_factor * base, half-way at the middle', () => {
    const s = new Schedule(0.1, 100, config({ name: 'cosine' }));
    expect(s.value(0)).toBeCloseTo(0.1, 12);
    expect(s.value(50)).toBeCloseTo(0.05, 12);
    expect(s.value(100)).toBeCloseTo(0, 12);
    const withFloor = new Schedule(1, 10, config({ name: 'cosine', final_factor: 0.2 }));
    expect(withFloor.value(10)).toBeCloseTo(0.2, 12);
    // Independent formula at an arbitrary step.
    expect(s.value(37)).toBeCloseTo(0.1 * 0.5 * (1 + Math.cos((Math.PI * 37) / 100)), 12);
  });

  it('warms up linearly, then decays over the remaining steps', () => {
    const s = new Schedule(2, 110, config({ name: 'cosine', warmup_steps: 10, warmup_start: 0.1 }));
    expect(s.value(0)).toBeCloseTo(0.2, 12);
    expect(s.value(5)).toBeCloseTo(2 * (0.1 + 0.9 * 0.5), 12);
    expect(s.value(10)).toBeCloseTo(2, 12);
    expect(s.value(60)).toBeCloseTo(1, 12);
  });

  it('linear, constant and step shapes', () => {
    expect(new Schedule(1, 10, config({ name: 'linear' })).value(4)).toBeCloseTo(0.6, 12);
    expect(new Schedule(3, 10, config({ name: 'constant' })).value(9)).toBe(3);
    const step = new Schedule(1, 100, config({ name: 'step', milestones: [30, 60], factor: 0.5 }));
    expect([step.value(29), step.value(30), step.value(59), step.value(60), step.value(99)]).toEqual([1, 0.5, 0.5, 0.25, 0.25]);
  });

  it('is stateless: the value depends on the step alone', () => {
    const a = new Schedule(1, 50, config({}));
    const forward = Array.from({ length: 50 }, (_, t) => a.value(t));
    const backward = Array.from({ length: 50 }, (_, t) => a.value(49 - t)).reverse();
    expect(forward).toEqual(backward);
  });

  it('refuses an empty run', () => {
    expect(() => new Schedule(1, 0, config({}))).toThrow(/totalSteps > 0/);
  });
});

describe('RunningTr', () => {
  it('is the exponential moving average K = m K + (1 - m) k', () => {
    const running = new RunningTr(0.9);
    const ks = [0.5, 0.1, 0, 0.3];
    let expected = 0;
    for (const k of ks) {
      expected = 0.9 * expected + 0.1 * k;
      expect(running.update(k)).toBeCloseTo(expected, 15);
    }
  });

  it('round-trips its state', () => {
    const a = new RunningTr(0.99);
    a.update(0.2);
    const b = new RunningTr(0.99);
    b.loadStateDict(a.stateDict());
    expect(b.update(0.1)).toBe(a.update(0.1));
  });
});

describe('AdditiveTalr', () => {
  it('raises U when K < R, lowers it when K > R, holds it when equal', () => {
    const talr = new AdditiveTalr(0.5, 1);
    expect(talr.update(0.2, 0.1)).toBeCloseTo(1.05, 15);
    expect(talr.update(0.1, 0.3)).toBeCloseTo(0.95, 15);
    expect(talr.update(0.3, 0.3)).toBeCloseTo(0.95, 15);
  });

  it('clamps at zero', () => {
    const talr = new AdditiveTalr(10, 0.1);
    expect(talr.update(0, 1)).toBe(0);
    expect(talr.update(0.01, 0)).toBeCloseTo(0.1, 15);
  });
});

describe('multiplicative TALR rules', () => {
  it('multiplicative: U = U * R / K, with R/K clamped and K = 0 counted as the largest raise', async () => {
    const { MultiplicativeTalr } = await import('../../src/schedules/talr.js');
    const talr = new MultiplicativeTalr(2, 0.1);
    expect(talr.update(0.2, 0.25)).toBeCloseTo(0.08, 15);
    expect(talr.update(0.3, 0.3)).toBeCloseTo(0.08, 15);
    expect(talr.update(1, 0.1)).toBeCloseTo(0.16, 15); // ratio 10 clamped to 2
    expect(talr.update(0.1, 0)).toBeCloseTo(0.32, 15);
    expect(talr.update(0, 0)).toBeCloseTo(0.32, 15);
  });

  it("momentum-multiplicative: U = m' U + (1 - m') U R / K", async () => {
    const { MomentumMultiplicativeTalr } = await import('../../src/schedules/talr.js');
    const talr = new MomentumMultiplicativeTalr(0.9, 4, 1);
    let U = 1;
    for (const [R, K] of [[0.2, 0.1], [0.1, 0.3], [0.05, 0.05]] as const) {
      U = 0.9 * U + 0.1 * U * (R / K);
      expect(talr.update(R, K)).toBeCloseTo(U, 15);
    }
  });
});

describe('TrackingError', () => {
  it('is mean |K - R| / R(0) after the settling window', async () => {
    const { TrackingError } = await import('../../src/schedules/tracking.js');
    const tracking = new TrackingError(0.5, 2);
    expect(tracking.value).toBeNull();
    tracking.add(0, 0.5, 0);
    tracking.add(1, 0.5, 0);
    expect(tracking.value).toBeNull();
    tracking.add(2, 0.4, 0.3);
    tracking.add(3, 0.3, 0.5);
    expect(tracking.value).toBeCloseTo((0.1 / 0.5 + 0.2 / 0.5) / 2, 15);
  });
});

describe('per-epoch schedules and the released ratio', () => {
  it('interval epoch holds each value for an epoch and follows the closed form to rounding', () => {
    const s = new Schedule(0.1, 40, config({ name: 'cosine', interval: 'epoch' }), 8); // 5 epochs
    for (let step = 0; step < 40; step++) {
      const e = Math.floor(step / 8);
      expect(s.value(step)).toBe(s.value(e * 8));
      expect(Math.abs(s.value(step) - 0.1 * 0.5 * (1 + Math.cos((Math.PI * e) / 5)))).toBeLessThan(1e-16);
    }
    expect(s.value(40)).toBe(0);
    const milestones = new Schedule(1, 40, config({ name: 'step', interval: 'epoch', milestones: [2, 4] }), 8);
    expect([0, 15, 16, 31, 32].map((t) => milestones.value(t))).toEqual([1, 1, 0.1, 0.1, 0.1 ** 2]);
    expect(() => new Schedule(1, 40, config({ interval: 'epoch' }))).toThrow(/needs the steps per epoch/);
  });

  it('without a clamp the multiplicative rules use R / (K + eps)', async () => {
    const { MomentumMultiplicativeTalr } = await import('../../src/schedules/talr.js');
    const talr = new MomentumMultiplicativeTalr(0.99, null, 0.1, 1e-8);
    expect(talr.update(5e-3, 1e-3)).toBe(0.99 * 0.1 + (1 - 0.99) * 0.1 * (5e-3 / (1e-3 + 1e-8)));
    expect(Number.isFinite(talr.update(5e-3, 0))).toBe(true);
  });
});
