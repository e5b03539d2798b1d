import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { TrController } from '../../src/schedules/controller.js';

const sizes = [100, 300];

describe('TrController', () => {
  it('follows docs/method.md step by step (checked against a direct transcription of the equations)', () => {
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

describe('TrController, beyond the paper', () => {
  it('per-layer scope: each layer its own K and U against the same target, one LR per layer', () => {
    const config = loadConfig(null, ['tr.scope=layer', 'tr.momentum=0.8', 'tr.talr.eta=0.5', 'tr.lambda=0.05']);
    const controller = new TrController(config, 10, sizes);
    const K = [0, 0];
    const U = [0.1, 0.1];
    controller.step(0, null);
    for (let t = 1; t < 10; t++) {
      const counts = [t * 3, 60 - t * 5];
      const decision = controller.step(t, counts);
      const R = config.tr.r0 * 0.5 * (1 + Math.cos((Math.PI * t) / 10));
      for (let i = 0; i < 2; i++) {
        K[i] = 0.8 * K[i]! + 0.2 * (counts[i]! / sizes[i]!);
        U[i] = Math.max(0, U[i]! + 0.5 * (R - K[i]!));
      }
      expect(decision.K_layers!.map((x) => Number(x.toFixed(14)))).toEqual(K.map((x) => Number(x.toFixed(14))));
      expect(decision.lr_quant).toEqual(decision.U_layers);
      (decision.lr_quant as number[]).forEach((u, i) => expect(u).toBeCloseTo(U[i]!, 14));
      expect(decision.U).toBeCloseTo((U[0]! * 100 + U[1]! * 300) / 400, 14);
    }
    const copy = new TrController(config, 10, sizes);
    copy.loadStateDict(controller.stateDict());
    expect(copy.stateDict()).toEqual(controller.stateDict());
    expect(() => new TrController(config, 10, sizes).loadStateDict({ K: 0, U: 0, last_step: 3 })).toThrow(/per-layer/);
  });

  it('selects the TALR rule from the config', () => {
    const multiplicative = new TrController(loadConfig(null, ['tr.talr.rule=multiplicative', 'tr.momentum=0']), 10, sizes);
    multiplicative.step(0, null);
    const { R, U } = multiplicative.step(1, [80, 0]);
    // K = k = 0.2 (momentum 0): U = 0.1 * R/K, with R/K clamped to [1/2, 2].
    expect(U).toBeCloseTo(0.1 * Math.max(0.5, R! / 0.2), 15);
  });

  it('tr.auto derives m and eta from the run length; explicit values win', async () => {
    const { controllerSettings } = await import('../../src/config/resolve.js');
    const auto = loadConfig(null, ['tr.auto=true']);
    expect(auto.tr.momentum).toBeNull();
    expect(auto.tr.talr.eta).toBeNull();
    // Long runs get the paper's m = 0.99 and eta = U(0).
    const long = controllerSettings(auto, 600_000);
    expect(long.momentum).toBeCloseTo(0.99, 15);
    expect(long.eta).toBe(0.1);
    // The default job (1404 steps): K's time constant ~14 steps, eta scaled by 100 / (R0 T).
    const short = controllerSettings(auto, 1404);
    expect(short.momentum).toBeCloseTo(1 - 1 / 14.04, 12);
    expect(short.eta).toBeCloseTo(0.1 * (100 / (auto.tr.r0 * 1404)), 12);
    expect(controllerSettings(loadConfig(null, ['tr.auto=true', 'tr.momentum=0.5', 'tr.talr.eta=3']), 1404)).toEqual({ momentum: 0.5, eta: 3 });
    expect(controllerSettings(loadConfig(null), 1404)).toEqual({ momentum: 0.99, eta: 0.1 });
  });

  it('reports the tracking error of K against R after the settling window', () => {
    const config = loadConfig(null, ['tr.momentum=0', 'tr.settle_fraction=0.5']);
    const controller = new TrController(config, 4, sizes);
    const expected: number[] = [];
    for (let t = 0; t < 4; t++) {
      const decision = controller.step(t, t === 0 ? null : [4, 0]);
      if (t >= 2) expected.push(Math.abs(0.01 - decision.R!) / config.tr.r0);
    }
    expect(controller.trackingError).toBeCloseTo((expected[0]! + expected[1]!) / 2, 15);
    expect(new TrController(loadConfig(null, ['mode=baseline']), 4, sizes).trackingError).toBeNull();
  });
});
