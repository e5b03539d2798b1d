// The controller plug-in API: loading modules, validating every decision, built-ins through the same path.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { TrController } from '../../src/schedules/controller.js';
import { loadPlugins, pluginChanges, identities, PluginError, type TalrPlugin } from '../../src/schedules/plugin.js';

const fixtures = resolve('test/support/fixtures/plugins');
const examples = resolve('examples');
const sizes = [300, 100];
const errorOf = async (action: () => unknown): Promise<Error> => {
  try {
    await action();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
};

describe('loading plug-in modules', () => {
  it('names the key, the file and the missing export', async () => {
    const config = loadConfig(null, [`tr.schedule.module=${join(fixtures, 'no-export.mjs')}`]);
    const error = await errorOf(() => loadPlugins(config));
    expect(error.message).toMatch(/tr\.schedule\.module: .*no-export\.mjs must export a function "schedule\(args, context\)".*it exports something/);
    expect((error as { exitCode?: number }).exitCode).toBe(2);
  });

  it('says when the file does not exist, and resolves paths relative to the config file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trqat-plugin-'));
    writeFileSync(join(dir, 'c.yaml'), 'tr:\n  talr: {module: ./missing.mjs}\n');
    const config = loadConfig(join(dir, 'c.yaml'));
    expect((config.tr.talr as { module: string }).module).toBe(join(dir, 'missing.mjs'));
    expect((await errorOf(() => loadPlugins(config))).message).toMatch(/tr\.talr\.module: cannot read .*missing\.mjs \(ENOENT\)/);
  });

  it('refuses a module that is not a path, and keeps the built-in errors clear', () => {
    expect(() => loadConfig(null, ['tr.schedule.module=3'])).toThrow(/tr\.schedule\.module: must be the path of a JavaScript module/);
    expect(() => loadConfig(null, ['tr.talr.rule=pid'])).toThrow(/tr\.talr\.rule: .*"additive".*got "pid"/);
  });

  it('records path and sha256, and tells a changed file from the same one', async () => {
    const config = loadConfig(null, [`tr.schedule.module=${join(examples, 'step-schedule.mjs')}`]);
    const ids = identities(await loadPlugins(config));
    expect(ids).toEqual([{ role: 'schedule', name: 'step-schedule.mjs', module: join(examples, 'step-schedule.mjs'), sha256: expect.stringMatching(/^[0-9a-f]{64}$/) }]);
    expect(pluginChanges(ids, ids)).toEqual([]);
    expect(pluginChanges([{ ...ids[0]!, sha256: '0'.repeat(64) }], ids)[0]).toMatch(/step-schedule\.mjs changed \(sha256 000000000000 at the checkpoint/);
    expect(pluginChanges(ids, [])[0]).toMatch(/trained with a target-TR schedule plug-in/);
  });
});

describe('every decision is checked before it is sent', () => {
  const cases: [string, (step: number) => number | number[], RegExp][] = [
    ['NaN', () => Number.NaN, /"bad" at step 3: update\(\) returned NaN/],
    ['negative', () => -0.5, /"bad" at step 3: update\(\) returned -0.5 \(it must be a finite number >= 0\)/],
    ['Infinity', () => Number.POSITIVE_INFINITY, /"bad" at step 3: update\(\) returned Infinity/],
    ['a NaN per layer', () => [0.1, Number.NaN], /"bad" at step 3: update\(\) returned U\[1\] is NaN/],
    ['too few layers', () => [0.1], /"bad" at step 3: update\(\) returned U has 1 entries for 2 quantized layers/],
  ];
  for (const [what, value, message] of cases) {
    it(`a TALR rule that decides ${what} at step 3 ends with an error naming it and the step`, async () => {
      const talr: TalrPlugin = { name: 'bad', update: ({ step }) => (step === 3 ? value(step) : 0.1) };
      const controller = new TrController(loadConfig(null, []), 10, sizes, undefined, await loadPlugins(loadConfig(null, []), { talr }));
      for (let t = 0; t < 3; t++) controller.step(t, t === 0 ? null : [3, 1]);
      const error = await errorOf(() => controller.step(3, [3, 1]));
      expect(error).toBeInstanceOf(PluginError);
      expect(error.message).toMatch(message);
      expect(error.message).toMatch(/nothing was sent to the ranks/);
      expect(controller.stateDict().last_step).toBe(2); // the step was not taken: the run ends here
    });
  }

  it('a schedule that throws, and a whole decision with a negative LR, are named too', async () => {
    const config = loadConfig(null, []);
    const schedule = { name: 'thrower', target: (step: number) => (step === 2 ? (() => { throw new Error('boom'); })() : 1e-3) };
    const a = new TrController(config, 10, sizes, undefined, await loadPlugins(config, { schedule }));
    a.step(0, null);
    a.step(1, [1, 1]);
    expect(() => a.step(2, [1, 1])).toThrow(/target-TR schedule plug-in "thrower" at step 2: target\(\) threw: boom/);
    const controller = { name: 'whole', decide: () => ({ K: 0, R: 1e-3, U: 0.1, lr_quant: 0.1, lr_other: -1 }) };
    const b = new TrController(config, 10, sizes, undefined, await loadPlugins(config, { controller }));
    expect(() => b.step(0, null)).toThrow(/controller plug-in "whole" at step 0: it decided lr_other is negative \(-1\)/);
  });
});

describe('the built-ins take the plug-in path and decide as the paper says', () => {
  it('additive rule, cosine target: every step against an independent computation', () => {
    const config = loadConfig(null, ['tr.momentum=0.9', 'tr.talr.eta=0.5']);
    const total = 40;
    const controller = new TrController(config, total, sizes);
    const N = 400;
    let K = 0;
    let U = config.tr.talr.u0;
    for (let t = 0; t < total; t++) {
      const counts = t === 0 ? null : [(t * 7) % 11, (t * 3) % 5];
      const d = controller.step(t, counts);
      const R = config.tr.r0 * 0.5 * (1 + Math.cos((Math.PI * t) / total));
      if (counts) {
        const k = (counts[0]! + counts[1]!) / N;
        K = 0.9 * K + 0.1 * k;
        U = Math.max(0, U + 0.5 * (R - K));
      }
      expect(d.R).toBeCloseTo(R, 15);
      expect(d.K).toBeCloseTo(K, 15);
      expect(d.U).toBeCloseTo(U, 15);
      expect(d.lr_quant).toBe(d.U);
    }
  });

  it('per-layer scope: each layer its own K and U, U the size-weighted mean', () => {
    const config = loadConfig(null, ['tr.scope=layer', 'tr.momentum=0.5', 'tr.talr.eta=1']);
    const controller = new TrController(config, 10, sizes);
    controller.step(0, null);
    const d = controller.step(1, [30, 0]);
    const R = config.tr.r0 * 0.5 * (1 + Math.cos(Math.PI / 10));
    const u0 = config.tr.talr.u0;
    const expected = [Math.max(0, u0 + (R - 0.5 * 0.1)), Math.max(0, u0 + R)];
    expect(d.K_layers).toEqual([0.05, 0]);
    expect(d.U_layers![0]).toBeCloseTo(expected[0]!, 15);
    expect(d.U_layers![1]).toBeCloseTo(expected[1]!, 15);
    expect(d.U).toBeCloseTo((300 * expected[0]! + 100 * expected[1]!) / 400, 15);
  });

  it('loads the flat state of checkpoints written before plug-ins', () => {
    const config = loadConfig(null, []);
    const controller = new TrController(config, 10, sizes);
    controller.loadStateDict({ K: 0.01, U: 0.3, last_step: 4 });
    const d = controller.step(5, [0, 0]);
    expect(d.U).toBeCloseTo(Math.max(0, 0.3 + config.tr.talr.eta! * (d.R! - 0.99 * 0.01)), 15);
  });
});

describe('a stateful plug-in resumes exactly', () => {
  it('the examples: a run split at step 13 decides what an uninterrupted one does', async () => {
    const config = loadConfig(resolve('examples/scheduling-as-code.yaml'));
    const counts = (t: number) => (t === 0 ? null : [(t * 13) % 29, (t * 5) % 7]);
    const straight = new TrController(config, 24, sizes, 3, await loadPlugins(config));
    const all = Array.from({ length: 24 }, (_, t) => straight.step(t, counts(t)));
    const first = new TrController(config, 24, sizes, 3, await loadPlugins(config));
    for (let t = 0; t < 13; t++) first.step(t, counts(t));
    const state = JSON.parse(JSON.stringify(first.stateDict())); // as controller.json holds it
    const second = new TrController(config, 24, sizes, 3, await loadPlugins(config));
    second.loadStateDict(state);
    const rest = Array.from({ length: 11 }, (_, i) => second.step(13 + i, counts(13 + i)));
    expect(rest).toEqual(all.slice(13));
    expect(all.some((d) => d.U_layers && d.U_layers[0] !== d.U_layers[1])).toBe(true); // the damping acted on one layer
    expect(new Set(all.map((d) => d.R)).size).toBe(3); // three steps of the target
  });
});
