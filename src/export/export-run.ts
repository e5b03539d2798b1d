import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import type { ResolvedConfig } from '../config/resolve.js';
import { TrqatError } from '../errors.js';
import { pythonCommand, pythonPath } from '../bridge/launcher.js';
import { Checkpoints, folderName, type CheckpointRef } from '../run/checkpoints.js';
import { readJson } from '../files.js';
import { CONFIG_FILE, notARunFolder } from '../run/record.js';
import type { ExportFormat } from '../config/export-formats.js';
import { verifyOnnx, type OnnxCheck } from './verify-onnx.js';


/** The run's test samples the export is checked on, unless told otherwise (all of Fashion-MNIST and CIFAR). */
export const DEFAULT_VERIFY_SAMPLES = 10_000;
/** Lines of the Python side's stderr kept for the error when it fails unexpectedly. */
const STDERR_TAIL_LINES = 20;

export interface ExportOptions {
  /** The checkpoint of this step; default: the latest. */
  step?: number;
  /** The checkpoint of the best evaluation (train.keep_best). */
  best?: boolean;
  format?: ExportFormat;
  /** Default: <run>/export/model-step-NNNNNNN.<format>. */
  output?: string;
  /** Test samples to check the file on (default DEFAULT_VERIFY_SAMPLES; 0: no check). */
  verifySamples?: number;
  /** Hears what the export is doing, as it goes (the phases of cli/progress.ts's PHASES). */
  onProgress?: (progress: ExportProgress) => void;
}

/** One progress report of an export: a phase, and how far it is (`total` null: one operation, announced). */
export interface ExportProgress {
  phase: string;
  done: number;
  total: number | null;
}

/** What `python -m trqat.export` reports (snake_case, as it writes it). */
interface PythonReport {
  format: ExportFormat;
  path: string;
  bytes: number;
  fp32_bytes: number;
  step: number;
  layers: number;
  /** Number of quantized layers per weight bit-width. */
  weight_bits: Record<string, number>;
  quantized_weights: number;
  samples: number;
  pytorch_top1: number | null;
  reloaded_identical: boolean;
}

export interface ExportResult extends PythonReport {
  run_dir: string;
  checkpoint: CheckpointRef;
  /** onnx: ONNX Runtime against PyTorch on the test samples (null without samples). */
  onnx: OnnxCheck | null;
}

/** The checkpoint the options name: --step N, --best, or the latest. One that is not there is a usage error (exit 2). */
export function pickCheckpoint(runDir: string, config: ResolvedConfig, options: ExportOptions): CheckpointRef {
  const checkpoints = new Checkpoints(runDir, config.train.keep_checkpoints, config.train.keep_best);
  if (options.best) {
    const best = checkpoints.best();
    if (!best) {
      throw new TrqatError(`${runDir} has no best checkpoint (checkpoints/best.json): ${config.train.keep_best ? 'no evaluation has been checkpointed yet' : 'the run did not set train.keep_best'}; use --step N or the latest`, 2);
    }
    return { step: best.step, path: best.path };
  }
  if (options.step !== undefined) return checkpoints.at(options.step);
  const latest = checkpoints.latest();
  if (!latest) throw new TrqatError(`${runDir} has no checkpoint yet`, 2);
  return latest;
}

/**
 * Writes one checkpoint of a run as a deployable file and checks it: the trqat format is reloaded
 * and must compute the checkpoint's logits bit for bit (in Python); an ONNX graph runs in ONNX
 * Runtime here and must give PyTorch's top-1 with logits within LOGIT_TOLERANCE.
 */
export async function exportRun(runDir: string, options: ExportOptions = {}): Promise<ExportResult> {
  const dir = resolve(runDir);
  const configPath = join(dir, CONFIG_FILE);
  if (!existsSync(configPath)) throw notARunFolder(dir, existsSync(dir) ? `${CONFIG_FILE} is missing` : 'it does not exist');
  const config = readJson<ResolvedConfig>(configPath, 'run config');
  const checkpoint = pickCheckpoint(dir, config, options);
  const format = options.format ?? 'trqat';
  const output = resolve(options.output ?? join(dir, 'export', `model-${folderName(checkpoint.step)}.${format}`));
  const samples = options.verifySamples ?? DEFAULT_VERIFY_SAMPLES;
  const bundle = format === 'onnx' && samples > 0 ? mkdtempSync(join(tmpdir(), 'trqat-export-')) : null;
  try {
    const args = ['--config', configPath, '--checkpoint', checkpoint.path, '--format', format, '--output', output, '--verify-samples', String(samples)];
    if (bundle) args.push('--verify-dir', bundle);
    const report = await runPython(pythonCommand(config.worker.python, 'trqat.export'), args, options.onProgress);
    const onnx = bundle && report.samples > 0 ? await verifyOnnx(output, bundle, config.worker.threads ?? undefined, options.onProgress).catch(asFailure) : null;
    return { ...report, run_dir: dir, checkpoint, onnx };
  } finally {
    if (bundle) rmSync(bundle, { recursive: true, force: true });
  }
}

/** ONNX Runtime's own errors (a graph it cannot load or run) as a message, not a stack trace. */
function asFailure(error: unknown): never {
  if (error instanceof TrqatError) throw error;
  throw new TrqatError(`ONNX Runtime cannot run the exported graph: ${(error as Error).message}`);
}

/**
 * Runs the Python half; its stdout is progress lines (handed to `onProgress` as they come) and, last,
 * the report.
 */
async function runPython(command: string[], args: string[], onProgress?: (progress: ExportProgress) => void): Promise<PythonReport> {
  const [python, ...module] = command as [string, ...string[]];
  const subprocess = execa(python, [...module, ...args], { env: { PYTHONPATH: pythonPath() }, reject: false, stdin: 'ignore' });
  let pending = '';
  let last = '';
  subprocess.stdout?.on('data', (chunk: Buffer) => {
    const lines = (pending + chunk.toString()).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      last = line;
      const progress = progressOf(line);
      if (progress) onProgress?.(progress);
    }
  });
  const result = await subprocess;
  if (pending.trim() !== '') last = pending;
  let report: ({ ok: true } & PythonReport) | { ok: false; error: string } | null = null;
  try {
    report = JSON.parse(last);
  } catch {
    report = null;
  }
  if (report?.ok) return report;
  if (report && report.ok === false) throw new TrqatError(`export failed: ${report.error}`);
  const why = result.failed && result.exitCode === undefined ? (result.shortMessage ?? 'it did not start') : `exit code ${result.exitCode ?? result.signal}`;
  const tail = String(result.stderr).trim().split('\n').slice(-STDERR_TAIL_LINES).join('\n');
  throw new TrqatError(`export failed: ${python} -m trqat.export ended without a report (${why})${tail ? `:\n${tail}` : ''}`);
}

/** A progress line of the Python half, or null for any other line. */
function progressOf(line: string): ExportProgress | null {
  if (!line.startsWith('{"progress"')) return null;
  try {
    const { progress } = JSON.parse(line) as { progress: ExportProgress };
    return typeof progress?.phase === 'string' && Number.isFinite(progress.done) ? progress : null;
  } catch {
    return null;
  }
}
