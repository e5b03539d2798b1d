import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { transitionDistanceSchema, type TransitionDistance } from '../bridge/protocol.js';
import { decisionSchema, type StepDecision } from '../schedules/decision.js';
import { TrqatError, WriteError } from '../errors.js';
import { RUN_FILE_MODE, writeFileAtomic, writeFully, writing } from '../files.js';

/**
 * What a line of metrics.jsonl holds: the one definition that the run writes against (the types
 * below are inferred from it) and that every reader validates with (dashboard, report, compare).
 * JSON has no NaN: a loss or accuracy that was not reported (NaN in memory) is written as null and
 * read back as NaN.
 */
const notReported = z
  .number()
  .nullable()
  .transform((value) => value ?? Number.NaN);
const step = z.number().int().min(0);

/** One line per training step: the step's decision (src/schedules/decision.ts), its counts and its statistics. */
export const stepRecordSchema = decisionSchema.extend({
  type: z.literal('step'),
  step,
  epoch: z.number(),
  /** Per-layer transition counts, in the order of the run's `layers`. */
  counts: z.array(z.number().int().min(0)).nullable(),
  loss: notReported,
  /** Training top-1 of this step's batch, percent. */
  acc: notReported,
  samples: z.number().int().min(0),
  /** Steps per second over the recent steps. */
  steps_per_s: z.number(),
  time: z.number(),
  /** Every train.diagnostics_every steps: the weights' distance to their nearest transition point. */
  dist: transitionDistanceSchema.optional(),
});

/** One line per evaluation. */
export const evalRecordSchema = z.object({
  type: z.literal('eval'),
  step,
  epoch: z.number(),
  top1: z.number(),
  loss: notReported,
  samples: z.number().int().min(0),
  seconds: z.number(),
  /** Mean |K - R| / R(0) so far (after the settling window); null in baseline mode. */
  tracking_error: z.number().nullable(),
  time: z.number(),
});

export const metricsRecordSchema = z.discriminatedUnion('type', [stepRecordSchema, evalRecordSchema]);

export type StepRecord = z.output<typeof stepRecordSchema>;
export type EvalRecord = z.output<typeof evalRecordSchema>;
export type MetricsRecord = StepRecord | EvalRecord;

/** A line of metrics.jsonl that is not a metrics record: names the line and the field. */
export class MetricsLineError extends Error {}

/** Parses one line of metrics.jsonl (`lineNumber` counts from 1, for the message). */
export function parseMetricsLine(line: string, lineNumber: number): MetricsRecord {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    throw new MetricsLineError(`line ${lineNumber} is not JSON (${(error as Error).message})`);
  }
  const parsed = metricsRecordSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new MetricsLineError(`line ${lineNumber}: ${issue.path.length > 0 ? issue.path.join('.') : 'record'}: ${issue.message}`);
  }
  return parsed.data;
}

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
  dist?: TransitionDistance,
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
    ...(dist ? { dist } : {}),
  };
}

/** Lines are buffered and written in batches so a fast run does not pay a syscall per step. */
const FLUSH_EVERY_LINES = 200;
/** ...and written at most this long after they arrive, so `trqat view` of a slow run does not lag 200 steps. */
export const FLUSH_EVERY_MS = 2000;

/**
 * The run's JSON-lines metrics log. A write that fails (a full disk) is undone: the file is cut
 * back to its last whole line, the lines are dropped (a resume writes them again from the
 * checkpoint), and a WriteError names the file.
 */
export class MetricsLog {
  private readonly fd: number;
  private pending: string[] = [];
  /** Bytes of whole lines in the file. */
  private size: number;
  private closed = false;
  private lastFlush = Date.now();
  /** Writes the pending lines when no further line comes within FLUSH_EVERY_MS. */
  private timer: NodeJS.Timeout | null = null;
  /** A timed flush that failed: thrown by the next write, flush or close (a timer has no caller to tell). */
  private failure: unknown = null;

  constructor(readonly path: string) {
    this.fd = writing(path, () => openSync(path, 'a', RUN_FILE_MODE));
    this.size = fstatSync(this.fd).size;
  }

  write(record: MetricsRecord): void {
    this.rethrow();
    this.pending.push(JSON.stringify(record));
    if (this.pending.length >= FLUSH_EVERY_LINES || Date.now() - this.lastFlush >= FLUSH_EVERY_MS) this.flush();
    else this.timer ??= setTimeout(() => this.timedFlush(), this.lastFlush + FLUSH_EVERY_MS - Date.now()).unref();
  }

  flush(): void {
    this.rethrow();
    this.lastFlush = Date.now();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.length === 0 || this.closed) return;
    const data = Buffer.from(`${this.pending.join('\n')}\n`);
    this.pending = [];
    try {
      writeFully(this.fd, data);
    } catch (error) {
      try {
        ftruncateSync(this.fd, this.size);
      } catch {
        // the reader skips a torn last line; nothing more can be done on a failing disk
      }
      throw new WriteError(this.path, error);
    }
    this.size += data.length;
  }

  private timedFlush(): void {
    this.timer = null;
    try {
      this.flush();
    } catch (error) {
      this.failure = error;
    }
  }

  private rethrow(): void {
    const failure = this.failure;
    this.failure = null;
    if (failure !== null) throw failure;
  }

  /** Flushes and closes; the file is closed even when the flush fails (which then throws). Closing twice is a no-op. */
  close(): void {
    if (this.closed) return;
    try {
      this.flush();
    } finally {
      this.closed = true;
      closeSync(this.fd);
    }
  }

  /**
   * Every record of a log file. A torn last line (a crash mid-write) is skipped; any other line that
   * is not a metrics record is an error naming the file, the line and the field.
   */
  static read(path: string): MetricsRecord[] {
    return MetricsLog.lines(path).map(({ record }) => record);
  }

  /**
   * Drops records from steps at or after `step` (they are replayed by the resumed run); kept lines stay byte for byte.
   * A log that does not reach step `step - 1` (deleted, cut) is refused (exit 2): continuing would lose the run's history.
   */
  static truncate(path: string, step: number): void {
    const kept = MetricsLog.lines(path).filter(({ record }) => (record.type === 'step' ? record.step < step : record.step <= step));
    const last = kept.reduce((max, { record }) => (record.type === 'step' ? Math.max(max, record.step) : max), -1);
    if (last < step - 1) {
      const held = last < 0 ? 'holds no step' : `ends at step ${last}`;
      throw new TrqatError(
        `${path} ${existsSync(path) ? held : 'is missing: it holds no step'} before the checkpoint of step ${step}: the history of steps ${last + 1}-${step - 1} is missing; ` +
          'restore the file (a resume continues the log, it cannot rebuild it), or start the run again with trqat train',
        2,
      );
    }
    writeFileAtomic(path, kept.map(({ text }) => `${text}\n`).join(''));
  }

  private static lines(path: string): { text: string; record: MetricsRecord }[] {
    if (!existsSync(path)) return [];
    const lines = readFileSync(path, 'utf8').split('\n');
    let last = lines.length - 1;
    while (last >= 0 && lines[last]!.trim() === '') last--;
    const out: { text: string; record: MetricsRecord }[] = [];
    for (let i = 0; i <= last; i++) {
      const text = lines[i]!;
      if (text.trim() === '') continue;
      try {
        out.push({ text, record: parseMetricsLine(text, i + 1) });
      } catch (error) {
        // Only the last line can be torn by a crash; anything else means the file is damaged.
        if (i === last && lines.length - 1 === last) break;
        throw new TrqatError(`${path}, ${(error as Error).message}; the metrics log is damaged`);
      }
    }
    return out;
  }
}
