import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { TrController } from '../src/schedules/controller.js';

const sizes = [100, 300];

describe('TrController', () => {
  it('follows method.md step by step (checked against a direct transcription of the equations)', () => {
    const config = loadConfig(null, ['tr.momentum=0.9', 'tr.lambda=0.01', 'optimizer.lr=0.1']);
    const controller = new TrController(config, 20, sizes);
    const R0 = 0.01 * Math.sqrt(2);
    let K = 0;
    let U = 0.1;
    for (let t = 0; t < 20; t++) {
      const counts = t === 0 ? null : [t % 3, (7 * t) % 11];
      const decision = controller.step(t, counts);
      const R = R0 * 0.5 * (1 + Math.cos((Math.PI * t) / 20));
      if (counts) {
        const k = (counts[0]! + counts[1]!) / 400;
        K = 0.9 * K + 0.1 * k;
        U = Math.max(0, U + 0.1 * (R - K));
        expect(decision.k).toBeCloseTo(k, 15);
      } else {
        expect(decision.k).toBeNull();
      }
      expect(decision.K).toBeCloseTo(K, 15);
      expect(decision.R).toBeCloseTo(R, 15);
      expect(decision.U).toBeCloseTo(U, 15);
      expect(decision.lr_quant).toBe(decision.U);
      expect(decision.lr_other).toBeCloseTo(0.1 * 0.5 * (1 + Math.cos((Math.PI * t) / 20)), 15);
    }
  });

  it('in baseline mode gives the quantized weights the ordinary LR and still measures K', () => {
    const controller = new TrController(loadConfig(null, ['mode=baseline']), 10, sizes);
    controller.step(0, null);
    const decision = controller.step(1, [40, 0]);
    expect(decision.lr_quant).toBe(decision.lr_other);
    expect(decision.R).toBeNull();
    expect(decision.U).toBeNull();
    expect(decision.k).toBeCloseTo(0.1, 15);
    expect(decision.K).toBeCloseTo(0.001, 15);
  });

  it('continues exactly after a state round trip', () => {
    const config = loadConfig(null, []);
    const straight = new TrController(config, 30, sizes);
    const first = new TrController(config, 30, sizes);
    const counts = (t: number) => (t === 0 ? null : [(t * 13) % 7, (t * 5) % 17]);
    const expected = Array.from({ length: 30 }, (_, t) => straight.step(t, counts(t)));
    for (let t = 0; t < 12; t++) first.step(t, counts(t));
    const second = new TrController(config, 30, sizes);
    second.loadStateDict(JSON.parse(JSON.stringify(first.stateDict())));
    for (let t = 12; t < 30; t++) expect(second.step(t, counts(t))).toEqual(expected[t]);
  });

  it('refuses skipped steps and wrong count lengths', () => {
    const controller = new TrController(loadConfig(null, []), 10, sizes);
    expect(() => controller.step(1, null)).toThrow(/expected step 0/);
    controller.step(0, null);
    expect(() => controller.step(1, [1])).toThrow(/expected 2 per-layer counts/);
  });
});
