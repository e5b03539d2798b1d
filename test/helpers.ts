import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load.js';
import type { ResolvedConfig } from '../src/config/resolve.js';
import { MetricsLog, type EvalRecord, type StepRecord } from '../src/run/metrics.js';
import type { RunInfo } from '../src/run/train.js';

/** A few-second run on the synthetic dataset: 8 steps per epoch, on the CPU. */
export function tinyConfig(overrides: string[] = []): ResolvedConfig {
  const outDir = mkdtempSync(join(tmpdir(), 'trqat-e2e-'));
  return loadConfig(null, [
    `out_dir=${outDir}`,
    'name=tiny',
    'data.name=synthetic',
    'data.synthetic.train_size=256',
    'data.synthetic.test_size=128',
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
