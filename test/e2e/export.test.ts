// End to end: a real short run (the Python worker over ZeroMQ), then `trqat export` in both formats,
// each file loaded back and checked against the run's own evaluation: the trqat file by Python's
// loader, the ONNX graph in ONNX Runtime (onnxruntime-node) against PyTorch.
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolvePython } from '../../src/bridge/launcher.js';
import { exportRun } from '../../src/export/export-run.js';
import type { RunSummary } from '../../src/run/record.js';
import { train } from '../../src/entry/train.js';
import { checkEquations, CLI, readRun, tinyConfig } from '../support/helpers.js';

const exec = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const PYTHON = resolvePython(null);

/** `trqat export ...` through the built CLI: exit code and output, never throwing. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [CLI, 'export', ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

// Mixed bit-widths: binary first stage, 4-bit last convs, W2 elsewhere.
const LAYER_BITS = '{"layers.0.*": 1, "layers.8.*": 4}';

describe('trqat export: from a trained run to deployable files', () => {
  let run: RunSummary;
  let evals: Map<number, number>;
  const checkpointed: number[] = [];

  beforeAll(async () => {
    // Checkpoints only at the end, and (keep_best) after every evaluation: the best one must exist to be kept.
    const config = tinyConfig([`quant.layer_bits=${LAYER_BITS}`, 'train.keep_best=true', 'train.keep_checkpoints=1', 'train.checkpoint_every=0']);
    run = await train(config, { onEvent: (event) => event.type === 'checkpoint' && checkpointed.push(event.checkpoint.step) });
    evals = new Map(readRun(run.run_dir).evals.map((e) => [e.step, e.top1]));
  }, 120_000);

  it('trains with per-layer bits, R(0) from the layers, and keeps the best checkpoint beside the latest', () => {
    const { steps, info, config } = readRun(run.run_dir);
    const layers = info.layers!;
    expect(layers.filter((l) => l.weight_bits === 1).map((l) => l.name)).toEqual(['layers.0.conv1', 'layers.0.conv2']);
    expect(layers.filter((l) => l.weight_bits === 4).map((l) => l.name)).toEqual(['layers.8.conv1', 'layers.8.conv2']);
    expect(layers.filter((l) => l.weight_bits === 2)).toHaveLength(14);
    // R(0) = lambda * sum n sqrt(b) / sum n, recorded in config.json and followed by the controller
    const n = layers.reduce((a, l) => a + l.numel, 0);
    const r0 = (0.02 * layers.reduce((a, l) => a + l.numel * Math.sqrt(l.weight_bits), 0)) / n;
    expect(config.tr.r0).toBeCloseTo(r0, 15);
    expect(config.tr.r0).not.toBeCloseTo(0.02 * Math.SQRT2, 6);
    checkEquations(steps, { sizes: layers.map((l) => l.numel), total: 24, r0, u0: config.tr.talr.u0, m: config.tr.momentum!, eta: config.tr.talr.eta! });

    expect(checkpointed).toEqual([...evals.keys()]);
    const best = [...evals].reduce((a, b) => (b[1] > a[1] ? b : a));
    const pointer = JSON.parse(readFileSync(join(run.run_dir, 'checkpoints', 'best.json'), 'utf8'));
    expect(pointer).toMatchObject({ step: best[0], path: `step-${String(best[0]).padStart(7, '0')}`, top1: best[1] });
    const folders = readdirSync(join(run.run_dir, 'checkpoints')).filter((f) => f.startsWith('step-'));
    expect(new Set(folders)).toEqual(new Set([pointer.path, 'step-0000024'])); // keep_checkpoints=1, plus the best
  });

  it('trqat format: bit-packed, smaller than full precision, and its loader reproduces the run\'s evaluation', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'trqat-export-')), 'model.trqat');
    const { code, stdout, stderr } = await cli([run.run_dir, '-o', out]);
    expect(code).toBe(0);
    // What it is doing, on stderr as it goes (plain lines off a terminal): every phase is announced.
    expect(stderr.split('\n').filter((line) => line.endsWith('…'))).toEqual(['loading the checkpoint…', 'converting to integer levels…', 'reading the test set…', 'writing the file…']);
    expect(stdout).toMatch(/^exported step 24 \(18 quantized layers: W1 x2, W2 x14, W4 x2\) to .*model\.trqat: .* on disk, full precision .* \((\d+\.\d)x smaller\)/);
    expect(stdout).toMatch(/checked on 128 test samples: reloaded, its logits equal the checkpoint's bit for bit/);
    // Python's loader on its own: the exported model's top-1 on the test set is the run's logged one.
    const script = [
      'import json, sys, torch',
      'from trqat import load_exported',
      'from trqat.data import build_data',
      'cfg = json.load(open(sys.argv[2]))',
      'model = load_exported(sys.argv[1])',
      'correct = samples = 0',
      'with torch.no_grad():',
      '    for x, y in build_data(cfg["data"], cfg["seed"], torch.device("cpu")).test_batches():',
      '        correct += int((model(x).argmax(1) == y).sum()); samples += len(y)',
      'print(json.dumps({"top1": 100.0 * correct / samples, "samples": samples, "bits": sorted({m.weight_bits for m in model.modules() if hasattr(m, "weight_levels")})}))',
    ].join('\n');
    const { stdout: py } = await exec(PYTHON, ['-c', script, out, join(run.run_dir, 'config.json')], { env: { ...process.env, PYTHONPATH: join(ROOT, 'python') } });
    const loaded = JSON.parse(py.trim().split('\n').pop()!);
    expect(loaded).toEqual({ top1: evals.get(24), samples: 128, bits: [1, 2, 4] });
    expect(statSync(out).size).toBeLessThan(statSync(join(run.run_dir, 'checkpoints', 'step-0000024', 'worker.pt')).size / 8);
  }, 120_000);

  it('onnx format: ONNX Runtime gives PyTorch\'s top-1 on the test set, logits within tolerance', async () => {
    const progress: { phase: string; done: number; total: number | null }[] = [];
    const result = await exportRun(run.run_dir, { format: 'onnx', best: true, onProgress: (p) => progress.push(p) });
    // The phases in order, and the two checks counted up to every sample.
    expect([...new Set(progress.map((p) => p.phase))]).toEqual(['checkpoint', 'convert', 'test-set', 'write', 'verify', 'onnx']);
    for (const phase of ['verify', 'onnx']) {
      const counts = progress.filter((p) => p.phase === phase);
      expect(counts[0]).toEqual({ phase, done: 0, total: 128 });
      expect(counts[counts.length - 1]).toEqual({ phase, done: 128, total: 128 });
      expect(counts.map((p) => p.done)).toEqual([...counts.map((p) => p.done)].sort((a, b) => a - b));
    }
    const best = JSON.parse(readFileSync(join(run.run_dir, 'checkpoints', 'best.json'), 'utf8'));
    expect(result.checkpoint.step).toBe(best.step);
    expect(result.path).toBe(join(run.run_dir, 'export', `model-step-${String(best.step).padStart(7, '0')}.onnx`));
    expect(result.pytorch_top1).toBe(evals.get(best.step)); // the checkpoint reproduces the run's evaluation
    const onnx = result.onnx!;
    expect(onnx.runtime).toBe('onnxruntime-node 1.16.3');
    expect(onnx.samples).toBe(128);
    expect(onnx.onnx_top1).toBe(onnx.pytorch_top1);
    expect(onnx.ok).toBe(true);
    expect(onnx.within_tolerance).toBeGreaterThanOrEqual(126);
    expect(onnx.tolerance).toBe(1e-4 * Math.max(1, onnx.max_abs_logit));
    expect(result.bytes).toBeLessThan(result.fp32_bytes);
  }, 120_000);

  it('bad usage exits 2 and a broken checkpoint exits 1, with a message and no traceback', async () => {
    const missing = await cli([run.run_dir, '--step', '7']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/has no checkpoint of step 7; it has steps [\d, ]*24\n/);
    const both = await cli([run.run_dir, '--step', '24', '--best']);
    expect(both.code).toBe(2);
    const format = await cli([run.run_dir, '--format', 'tflite']);
    expect(format.code).toBe(2);
    expect(format.stderr).toMatch(/option '--format <format>' argument 'tflite' is invalid\. Allowed choices are trqat, onnx/);

    const copy = mkdtempSync(join(tmpdir(), 'trqat-broken-'));
    cpSync(run.run_dir, copy, { recursive: true });
    const pt = join(copy, 'checkpoints', 'step-0000024', 'worker.pt');
    truncateSync(pt, 1000);
    const broken = await cli([copy, '--step', '24']);
    expect(broken.code, broken.stderr).toBe(1);
    expect(broken.stderr).toMatch(/^trqat: checkpoint \S+step-0000024 is damaged: worker\.pt does not match the sha256 recorded at its commit\n$/);
    expect(broken.stderr + broken.stdout).not.toMatch(/Traceback/);
    // A checkpoint damaged where no checksum was recorded (a run of an older trqat) fails in the loader.
    const pointer = join(copy, 'checkpoints', 'latest.json');
    const latest = JSON.parse(readFileSync(pointer, 'utf8')) as { commits?: { sha256?: unknown }[]; sha256?: unknown };
    writeFileSync(pointer, JSON.stringify(latest, (key, value: unknown) => (key === 'sha256' ? undefined : value)));
    const unverified = await cli([copy, '--step', '24']);
    expect(unverified.code, unverified.stderr).toBe(1);
    expect(unverified.stderr).toMatch(/^loading the checkpoint…\ntrqat: export failed: cannot load .*worker\.pt into the run's model/); // what it was doing, then why it failed
    expect(unverified.stderr + unverified.stdout).not.toMatch(/Traceback/);
  }, 120_000);
});
