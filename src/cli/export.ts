import { TrqatError } from '../errors.js';
import { DEFAULT_VERIFY_SAMPLES, exportRun, type ExportOptions, type ExportResult } from '../export/export-run.js';
import { EXPORT_FORMATS, type ExportFormat } from '../config/export-formats.js';
import { allowedOtherClass, allowedOutsideTolerance } from '../export/verify-onnx.js';
import { ProgressPrinter } from './progress.js';

/** `trqat export RUN_DIR [--step N | --best] [--format trqat|onnx] [-o PATH] [--verify-samples N]`: returns the exit code. */
export async function exportCommand(runDir: string, options: ExportOptions): Promise<number> {
  if (options.step !== undefined && options.best) throw new TrqatError('export: --step and --best name different checkpoints: give one', 2);
  // What it is doing, as it goes: the file is written in the first minute, checking it takes the rest.
  const printer = new ProgressPrinter(process.stderr, process.stderr, () => null); // stdout keeps the result alone
  let result: ExportResult;
  try {
    result = await exportRun(runDir, { ...options, onProgress: (progress) => printer.print({ type: 'progress', ...progress }) });
  } finally {
    printer.clear();
  }
  console.log(formatExport(result));
  if (result.onnx && !result.onnx.ok) {
    throw new TrqatError(
      `the ONNX graph does not reproduce PyTorch's results: of ${result.onnx.samples} samples, at most ${allowedOutsideTolerance(result.onnx.samples)} may have ` +
        `logits outside the tolerance and at most ${allowedOtherClass(result.onnx.samples)} another class (README, "Export"); the file is kept at ${result.path}`,
    );
  }
  return 0;
}

/** The help of `trqat export`, after commander's list of options. */
export const EXPORT_HELP = `
Writes one checkpoint of a run (default: the latest) as a deployable low-bit model, and checks it
on the run's test set (the first ${DEFAULT_VERIFY_SAMPLES.toLocaleString('en')} samples; --verify-samples 0 skips the check):
  --format trqat   one file: per quantized layer its levels bit-packed at its bit-width, its scales
                   and bits, and everything that stays in floating point (no pickle; load it with
                   trqat.load_exported). Reloaded, it must compute the checkpoint's logits bit for bit.
  --format onnx    the inference graph (int8 levels behind DequantizeLinear, round/clip activation
                   quantizers), run in ONNX Runtime and compared with PyTorch (README, "Export").
Exit codes: 0 done, 1 the export or its check failed, 2 bad usage.`;

export { EXPORT_FORMATS, type ExportFormat };

/** "1.23 MB" for a byte count. */
function size(bytes: number): string {
  const units = ['bytes', 'KB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[unit]}`;
}

export function formatExport(result: ExportResult): string {
  const bits = Object.entries(result.weight_bits)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([b, n]) => `W${b} x${n}`)
    .join(', ');
  const ratio = result.fp32_bytes / result.bytes;
  const lines = [
    `exported step ${result.step} (${result.layers} quantized layers: ${bits}) to ${result.path}: ${size(result.bytes)} on disk, ` +
      `full precision ${size(result.fp32_bytes)} (${ratio.toFixed(1)}x smaller)`,
  ];
  const top1 = (value: number | null) => (value === null ? '-' : `${value.toFixed(2)}%`);
  if (result.samples === 0) lines.push('not checked (--verify-samples 0)');
  else if (result.format === 'trqat') {
    lines.push(`checked on ${result.samples} test samples: reloaded, its logits equal the checkpoint's bit for bit; top-1 ${top1(result.pytorch_top1)}`);
  } else if (result.onnx) {
    const o = result.onnx;
    lines.push(
      `checked in ${o.runtime} on ${o.samples} test samples: top-1 ${top1(o.onnx_top1)} (PyTorch ${top1(o.pytorch_top1)}), same class on ${o.same_class}/${o.samples}, ` +
        `logits within ${o.tolerance.toExponential(1)} of PyTorch's on ${o.within_tolerance}/${o.samples} (max |difference| ${o.max_abs_diff.toExponential(2)})${o.ok ? '' : ': FAILED'}`,
    );
  }
  return lines.join('\n');
}
