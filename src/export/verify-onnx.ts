import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { TrqatError } from '../errors.js';

/**
 * When ONNX Runtime reproduces PyTorch. The quantized layers' sums are exact in float32 (integer
 * levels over powers of two), so the two differ only where float arithmetic does (full-precision
 * layers, BN), by float32 rounding: about 1e-6 measured. Rarely (about one sample in a thousand
 * measured), such a rounding difference lands on a quantizer's rounding boundary and moves one
 * activation by one level; that sample's logits then differ by more (up to a few percent of their
 * range). The check therefore allows, among N samples:
 * - at most max(2, 1% of N) samples whose logits are not all within LOGIT_TOLERANCE * max(1, max |logit|);
 * - at most max(1, 0.1% of N) samples with another predicted class.
 * A wrong graph (a quantizer's sign, a scale) changes almost every sample. The report gives both
 * top-1s, which are equal unless a moved level changed a sample's class.
 */
export const LOGIT_TOLERANCE = 1e-4;
export const allowedOutsideTolerance = (samples: number) => Math.max(2, Math.floor(0.01 * samples));
export const allowedOtherClass = (samples: number) => Math.max(1, Math.floor(0.001 * samples));

/** What `python -m trqat.export --verify-dir` wrote beside the inputs, labels and logits. */
interface VerifyBundle {
  samples: number;
  input_shape: number[];
  classes: number;
  batch_size: number;
}

/** The ONNX graph's results on the run's test samples against PyTorch's evaluation of the checkpoint. */
export interface OnnxCheck {
  runtime: string;
  samples: number;
  /** Top-1 (percent) of the ONNX graph and of PyTorch, over the same samples. */
  onnx_top1: number;
  pytorch_top1: number;
  /** Samples where both pick the same class. */
  same_class: number;
  /** Samples whose logits all lie within `tolerance` of PyTorch's. */
  within_tolerance: number;
  max_abs_diff: number;
  max_abs_logit: number;
  /** LOGIT_TOLERANCE * max(1, max_abs_logit). */
  tolerance: number;
  ok: boolean;
}

const floats = (buffer: Buffer) => new Float32Array(buffer.buffer, buffer.byteOffset, buffer.byteLength / 4);
const ints = (buffer: Buffer) => new Int32Array(buffer.buffer, buffer.byteOffset, buffer.byteLength / 4);

function argmax(values: Float32Array, start: number, count: number): number {
  let best = 0;
  for (let j = 1; j < count; j++) if (values[start + j]! > values[start + best]!) best = j;
  return best;
}

/** Runs `modelPath` in ONNX Runtime (CPU) on the bundle's inputs, batch by batch, and compares; `onProgress` hears the samples done. */
export async function verifyOnnx(
  modelPath: string,
  bundleDir: string,
  threads?: number,
  onProgress?: (progress: { phase: 'onnx'; done: number; total: number }) => void,
): Promise<OnnxCheck> {
  let ort: typeof import('onnxruntime-node');
  try {
    ort = await import('onnxruntime-node');
  } catch (error) {
    throw new TrqatError(`cannot load ONNX Runtime (onnxruntime-node): ${(error as Error).message}; run "npm ci" in the trqat folder`);
  }
  const info = JSON.parse(readFileSync(join(bundleDir, 'verify.json'), 'utf8')) as VerifyBundle;
  const labels = ints(readFileSync(join(bundleDir, 'labels.i32')));
  const reference = floats(readFileSync(join(bundleDir, 'logits.f32')));
  const perSample = info.input_shape.reduce((a, b) => a * b, 1);
  const session = await ort.InferenceSession.create(modelPath, threads ? { intraOpNumThreads: threads } : {});
  const fd = openSync(join(bundleDir, 'inputs.f32'), 'r');
  let maxLogit = 0;
  let correct = 0;
  let pytorchCorrect = 0;
  let same = 0;
  const sampleDiffs: number[] = [];
  try {
    onProgress?.({ phase: 'onnx', done: 0, total: info.samples });
    for (let start = 0; start < info.samples; start += info.batch_size) {
      const n = Math.min(info.batch_size, info.samples - start);
      const input = new Float32Array(n * perSample);
      readSync(fd, new Uint8Array(input.buffer), 0, input.byteLength, start * perSample * 4);
      const output = await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', input, [n, ...info.input_shape]) });
      const logits = output[session.outputNames[0]!]!.data as Float32Array;
      for (let i = 0; i < n; i++) {
        const row = i * info.classes;
        const refRow = (start + i) * info.classes;
        let diff = 0;
        for (let j = 0; j < info.classes; j++) {
          diff = Math.max(diff, Math.abs(logits[row + j]! - reference[refRow + j]!));
          maxLogit = Math.max(maxLogit, Math.abs(reference[refRow + j]!));
        }
        sampleDiffs.push(diff);
        const mine = argmax(logits, row, info.classes);
        const theirs = argmax(reference, refRow, info.classes);
        if (mine === labels[start + i]) correct++;
        if (theirs === labels[start + i]) pytorchCorrect++;
        if (mine === theirs) same++;
      }
      onProgress?.({ phase: 'onnx', done: start + n, total: info.samples });
    }
  } finally {
    closeSync(fd);
    await session.release();
  }
  const tolerance = LOGIT_TOLERANCE * Math.max(1, maxLogit);
  const within = sampleDiffs.filter((diff) => diff <= tolerance).length;
  const percent = (count: number) => (100 * count) / Math.max(1, info.samples);
  return {
    runtime: `onnxruntime-node ${ort.env.versions?.node ?? ''}`.trim(),
    samples: info.samples,
    onnx_top1: percent(correct),
    pytorch_top1: percent(pytorchCorrect),
    same_class: same,
    within_tolerance: within,
    max_abs_diff: Math.max(0, ...sampleDiffs),
    max_abs_logit: maxLogit,
    tolerance,
    ok: info.samples - within <= allowedOutsideTolerance(info.samples) && info.samples - same <= allowedOtherClass(info.samples),
  };
}
