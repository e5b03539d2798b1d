// The released-code preset end to end: a real managed run (Python worker, ZeroMQ), its logged
// per-layer counts fed to an independent re-implementation of the released optimizer's per-layer
// arithmetic (test/support/fixtures/released_reference.py, with torch's own CosineAnnealingLR).
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolvePython } from '../../src/bridge/launcher.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { train } from '../../src/entry/train.js';
import { readRun, tinyConfig } from '../support/helpers.js';

interface Reference {
  step: number;
  R: number;
  U_layers: number[];
  K_layers: number[];
  lr_other: number;
  lr_scales: number;
}

const TOLERANCE = 1e-12;
function close(actual: number, expected: number, what: string): void {
  expect(Math.abs(actual - expected), `${what}: ${actual} vs ${expected}`).toBeLessThanOrEqual(TOLERANCE * Math.abs(expected));
}

describe('tr.preset: released', () => {
  it('matches the released optimizer per layer, from the logged counts, to 1e-12', async () => {
    // 3 epochs of 8 steps; the batch of 32 (not the preset's 256) keeps the run to seconds.
    const config = tinyConfig(['tr.preset=released', 'data.batch_size=32', 'train.eval_every=0', 'train.checkpoint_every=0', 'tr.momentum=0.9', 'tr.talr.momentum=0.9']);
    expect(config.tr).toMatchObject({ scope: 'layer', k0: 5e-3, r0: 5e-3, talr: { rule: 'momentum_multiplicative', max_ratio: null, eps: 1e-8 } });
    const summary = await train(config);
    expect(summary.status).toBe('completed');
    const { steps, info } = readRun(summary.run_dir);
    expect(info.plan!.steps_per_epoch).toBe(8);

    const out = execFileSync(resolvePython(config.worker.python), [join(import.meta.dirname, '..', 'support', 'fixtures', 'released_reference.py'), summary.run_dir], { encoding: 'utf8' });
    const reference = JSON.parse(out) as Reference[];
    expect(reference.map((r) => r.step)).toEqual(steps.map((s) => s.step));
    let moved = 0;
    steps.forEach((s, t) => {
      const ref = reference[t]!;
      close(s.R!, ref.R, `R at step ${t}`);
      close(s.lr_other, ref.lr_other, `lr_other at step ${t}`);
      ref.U_layers.forEach((u, i) => close((s.lr_quant as number[])[i]!, u, `U of layer ${i} at step ${t}`));
      ref.K_layers.forEach((k, i) => close(s.K_layers![i]!, k, `K of layer ${i} at step ${t}`));
      if (ref.U_layers.some((u) => Math.abs(u - config.tr.talr.u0) > 1e-3 * config.tr.talr.u0)) moved++;
    });
    // R held for each epoch, then stepped: three values; and the controller did act.
    expect(new Set(steps.map((s) => s.R)).size).toBe(3);
    expect(moved).toBeGreaterThan(steps.length / 2);
    expect(steps[0]!.K).toBe(5e-3); // K(0) = R(0), left alone on the first step

    // The scales' group got 0.01 on the same per-epoch cosine (its LR is in the final checkpoint).
    const ckpt = join(summary.run_dir, 'checkpoints', readdirSync(join(summary.run_dir, 'checkpoints')).find((d) => d.startsWith('step-'))!, 'worker.pt');
    const script = `import sys; from trqat import safe_io; g=[g for g in safe_io.load(sys.argv[1])['optimizer']['param_groups'] if g['name']=='scales'][0]; print(g['lr'], g['momentum'], g['weight_decay'])`;
    const env = { ...process.env, PYTHONPATH: join(PACKAGE_ROOT, 'python') };
    const [lr, momentum, decay] = execFileSync(resolvePython(config.worker.python), ['-c', script, ckpt], { encoding: 'utf8', env }).trim().split(' ').map(Number);
    close(lr!, reference[reference.length - 1]!.lr_scales, 'the scales group LR');
    expect([momentum, decay]).toEqual([0, 0]);
  });
});
