import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { StepDecision } from '../schedules/controller.js';
import { writeFileAtomic } from './files.js';

/** One line of metrics.jsonl per training step. */
export interface StepRecord extends StepDecision {
  type: 'step';
  epoch: number;
  /** Per-layer transition counts, in the order of the run's `layers`. */
  counts: number[] | null;
  loss: number;
  /** Training top-1 of this step's batch, percent. */
  acc: number;
  samples: number;
  /** Steps per second over the recent steps. */
  steps_per_s: number;
  time: number;
}

/** One line per evaluation. */
export interface EvalRecord {
  type: 'eval';
  step: number;
  epoch: number;
  top1: number;
  loss: number;
  samples: number;
  seconds: number;
  /** Mean |K - R| / R(0) so far (after the settling window); null in baseline mode. */
  tracking_error: number | null;
  time: number;
}

export type MetricsRecord = StepRecord | EvalRecord;

/** What a worker or client reports about a step once it is computed. */
export interface StepStats {
  loss: number | null;
  correct: number | null;
  samples: number | null;
}

/** Steps per second, smoothed over ~20 steps so the display and ETA do not jump around. */
export class StepRate {
  private last = Date.now();
  private rate = 0;

  tick(now: number): number {
    const seconds = Math.max(1e-6, (now - this.last) / 1000);
    this.last = now;
    this.rate = this.rate === 0 ? 1 / seconds : 0.95 * this.rate + 0.05 / seconds;
    return this.rate;
  }
}

/** The metrics line of a decided step, once its loss is known. */
export function stepRecord(
  decision: StepDecision,
  counts: number[] | null,
  stats: StepStats,
  stepsPerEpoch: number,
  stepsPerSecond: number,
  now: number,
): StepRecord {
  const samples = stats.samples ?? 0;
  return {
    type: 'step',
    ...decision,
    epoch: (decision.step + 1) / stepsPerEpoch,
    counts,
    loss: stats.loss ?? Number.NaN,
    // NaN (null in the log) when correct predictions are not reported
    acc: samples > 0 && stats.correct !== null ? (100 * stats.correct) / samples : Number.NaN,
    samples,
    steps_per_s: stepsPerSecond,
    time: now / 1000,
  };
}

/** Lines are buffered and written in batches so a fast run does not pay a syscall per step. */
const FLUSH_EVERY_LINES = 200;

/** The run's JSON-lines metrics log. */
export class MetricsLog {
  private readonly fd: number;
  private pending: string[] = [];

  constructor(readonly path: string) {
    this.fd = openSync(path, 'a');
  }

  write(record: MetricsRecord): void {
    this.pending.push(JSON.stringify(record));
    if (this.pending.length >= FLUSH_EVERY_LINES) this.flush();
  }

  flush(): void {
    if (this.pending.length === 0) return;
    writeSync(this.fd, `${this.pending.join('\n')}\n`);
    this.pending = [];
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }

  /** Every record of a log file; a torn last line (a crash mid-write) is skipped. */
  static read(path: string): MetricsRecord[] {
    if (!existsSync(path)) return [];
    const records: MetricsRecord[] = [];
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      try {
        records.push(JSON.parse(line) as MetricsRecord);
      } catch {
        // Only the last line can be torn; anything after it would be unreadable anyway.
      }
    }
    return records;
  }

  /** Drops records from steps at or after `step` (they are replayed by the resumed run). */
  static truncate(path: string, step: number): void {
    const kept = MetricsLog.read(path).filter((record) => (record.type === 'step' ? record.step < step : record.step <= step));
    writeFileAtomic(path, kept.map((record) => `${JSON.stringify(record)}\n`).join(''));
  }
}
