import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { pythonCommand } from '../../src/bridge/launcher.js';
import { loadConfig } from '../../src/config/load.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import type { ResolvedConfig } from '../../src/config/resolve.js';
import { MetricsLog, type EvalRecord, type StepRecord } from '../../src/run/metrics.js';
import type { RunInfo } from '../../src/run/record.js';

/** The built command-line tool (`npm test` builds it first). */
export const CLI = join(PACKAGE_ROOT, 'dist', 'cli.js');

/** The tests' own user script (a small loop with trqat's Client, and faults on request). */
export const CLIENT_SCRIPT = join(PACKAGE_ROOT, 'test', 'support', 'fixtures', 'client_script.py');

/**
 * The command of CLIENT_SCRIPT under `trqat run` with `args`: `python client_script.py ...`, or with the
 * suite's fork server `python -m trqat.forkserver run client_script.py ...`, to the controller the same
 * script without importing torch again (issue 20). Tests of the script's own process (its controller
 * killed under it) start it plainly.
 */
export function clientScript(...args: string[]): string[] {
  return [...pythonCommand(null, CLIENT_SCRIPT), ...args];
}

/** A few-second run on the synthetic dataset: 8 steps per epoch, on the CPU, at 12x12 pixels (a step costs
 * a fifth of Fashion-MNIST's 28x28 and proves the same: the tests' time is the suite's, issue 20). */
export function tinyConfig(overrides: string[] = []): ResolvedConfig {
  const outDir = mkdtempSync(join(tmpdir(), 'trqat-e2e-'));
  return loadConfig(null, [
    `out_dir=${outDir}`,
    'name=tiny',
    'data.name=synthetic',
    'data.synthetic.train_size=256',
    'data.synthetic.test_size=128',
    'data.synthetic.image_size=12',
    'data.batch_size=32',
    'data.eval_batch_size=128',
    'train.steps=24',
    'train.eval_every=8',
    'train.log_every=1',
    'worker.device=cpu',
    'worker.threads=1',
    'worker.heartbeat_interval_ms=200',
    'worker.heartbeat_timeout_ms=3000',
    // A faster controller than the paper's defaults, so U visibly moves within 24 steps.
    'tr.lambda=0.02',
    'tr.momentum=0.5',
    ...overrides,
  ]);
}

export function readRun(runDir: string): { steps: StepRecord[]; evals: EvalRecord[]; info: RunInfo; config: ResolvedConfig } {
  const records = MetricsLog.read(join(runDir, 'metrics.jsonl'));
  return {
    steps: records.filter((r): r is StepRecord => r.type === 'step'),
    evals: records.filter((r): r is EvalRecord => r.type === 'eval'),
    info: JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')) as RunInfo,
    config: JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8')) as ResolvedConfig,
  };
}

/** What the equations need: the layer sizes, the plan length, and the controller's constants. */
export interface EquationConstants {
  sizes: number[];
  total: number;
  r0: number;
  u0: number;
  m: number;
  eta: number;
}

/** k, K, R, U of every step of a TR run with the additive rule, recomputed from the logged counts (docs/method.md). */
export function checkEquations(steps: StepRecord[], { sizes, total, r0, u0, m, eta }: EquationConstants): void {
  const N = sizes.reduce((a, b) => a + b, 0);
  let K = 0;
  let U = u0;
  for (const s of steps) {
    const R = r0 * 0.5 * (1 + Math.cos((Math.PI * s.step) / total));
    expect(s.R).toBeCloseTo(R, 14);
    if (s.step === 0) {
      expect(s.counts).toBeNull();
    } else {
      expect(s.counts).toHaveLength(sizes.length);
      const k = s.counts!.reduce((a, b) => a + b, 0) / N;
      expect(s.k).toBeCloseTo(k, 14);
      K = m * K + (1 - m) * k;
      U = Math.max(0, U + eta * (R - K));
    }
    expect(s.K).toBeCloseTo(K, 14);
    expect(s.U).toBeCloseTo(U, 14);
    expect(s.lr_quant).toBe(s.U);
  }
}

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Milliseconds until `pid` is gone (at most `limitMs`, then the limit). */
export async function goneWithin(pid: number, limitMs: number): Promise<number> {
  const start = Date.now();
  while (alive(pid) && Date.now() - start < limitMs) await new Promise((resolve) => setTimeout(resolve, 20));
  return Date.now() - start;
}

/** `promise`, or a failure naming `what` after `ms`: a wait that hangs says where it hung. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
