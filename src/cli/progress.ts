import type { RunEvent, RunSummary } from '../run/record.js';
import { duration, progressText, sci } from '../format.js';
import { EtaWindow } from '../eta.js';

/** Steps printed before the regular cadence (train.log_every): the run shows it started, and its pace. */
const EARLY_STEPS = new Set([1, 2, 5, 10]);

/** A run's line formatter: formatEvent with the run's own ETA window, fed by every step. */
export function eventFormatter(logEvery: number, ranks = false): (event: RunEvent) => string | null {
  const eta = new EtaWindow();
  return (event) => formatEvent(event, logEvery, ranks, eta);
}

/**
 * Formats run events as the human-readable lines the CLI prints: plain lines, no control
 * characters, so a log file or a CI console reads the same as a terminal. Ranks joining and
 * leaving are shown for client runs (`ranks`) and for data-parallel runs. Steps 1, 2, 5 and 10
 * are printed, then every `logEvery`-th and the last. `eta`: the run's window, fed every step here
 * (without it the ETA comes from the step's own steps/s).
 */
export function formatEvent(event: RunEvent, logEvery: number, ranks = false, eta?: EtaWindow): string | null {
  switch (event.type) {
    case 'listening':
      return `run folder ${event.runDir}`;
    case 'rank': {
      if (!ranks && event.worldSize === 1) return null;
      const r = event.rank;
      return `rank ${r.rank}/${event.worldSize} connected (pid ${r.pid} on ${r.hostname}, ${r.device}, trqat ${r.trqat_version})`;
    }
    case 'rank-left':
      return event.reason === 'bye' ? null : `rank ${event.rank.rank} left: ${event.reason}`;
    case 'started':
      return (
        `device ${event.device}, ${event.layers} quantized layers (${event.quantizedWeights.toLocaleString('en-US')} weights), ` +
        `${event.plan.total_steps} steps (${event.plan.steps_per_epoch} per epoch)` +
        (event.startStep > 0 ? `, resuming at step ${event.startStep}` : '')
      );
    case 'step': {
      const { record, plan } = event;
      const done = record.step + 1;
      eta?.add(record.step, record.time);
      if (done % logEvery !== 0 && done !== plan.total_steps && !EARLY_STEPS.has(done)) return null;
      const left = eta ? eta.eta(plan.total_steps) : record.steps_per_s > 0 ? (plan.total_steps - done) / record.steps_per_s : null;
      const fields = [
        `step ${done}/${plan.total_steps}`,
        `ep ${record.epoch.toFixed(2)}`,
        `loss ${Number.isFinite(record.loss) ? record.loss.toFixed(4) : '-'}`,
        `acc ${Number.isFinite(record.acc) ? `${record.acc.toFixed(1)}%` : '-'}`,
        `k ${sci(record.k)}`,
        `K ${sci(record.K)}`,
        record.R === null ? `lr_q ${sci(record.lr_other)}` : `R ${sci(record.R)}`,
        record.U === null ? null : `U ${sci(record.U)}`,
        `${record.steps_per_s.toFixed(1)} step/s`,
        left === null ? null : `ETA ${duration(left)}`,
      ];
      return fields.filter((field) => field !== null).join('  ');
    }
    case 'eval':
      return (
        `eval after step ${event.record.step}: top-1 ${event.record.top1.toFixed(2)}%  loss ${event.record.loss.toFixed(4)}` +
        (event.record.tracking_error === null ? '' : `  tracking error ${event.record.tracking_error.toFixed(3)}`) +
        `  (${event.record.seconds.toFixed(1)} s)`
      );
    case 'checkpoint':
      return `checkpoint ${event.checkpoint.path}`;
    case 'warning':
      return `warning: ${event.message}`;
    case 'progress':
      return progressText(event.phase, event.done, event.total);
    case 'dashboard':
      return `dashboard ${event.url}`;
    case 'report':
      return `report ${event.path}`;
  }
}

/** Where the printer writes: a terminal gets one updating status line, anything else plain lines. */
export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** A phase shorter than this stays silent (a quick evaluation needs no progress). */
const PROGRESS_AFTER_MS = 2000;
/** Without a terminal, a progress line every 10% (or every 30 s when the total is unknown). */
const PLAIN_PERCENT_STEP = 10;
const PLAIN_INTERVAL_MS = 30_000;

/**
 * Prints run events as lines. Progress of a long phase (loading data, evaluating) is, on a
 * terminal, one status line rewritten in place and cleared when the next line comes; elsewhere
 * (CI logs, a file) plain lines every 10%, with no control characters.
 */
export class ProgressPrinter {
  private status = false;
  private phase: { name: string; started: number; printedPercent: number; printedAt: number; eta: EtaWindow } | null = null;

  constructor(
    private readonly out: Output,
    private readonly err: Output,
    private readonly format: (event: RunEvent) => string | null,
    private readonly now: () => number = Date.now,
  ) {}

  print(event: RunEvent): void {
    if (event.type === 'progress') {
      this.progress(event.phase, event.done, event.total);
      return;
    }
    const line = this.format(event);
    if (line === null) return;
    this.clearStatus();
    (event.type === 'warning' ? this.err : this.out).write(`${line}\n`);
  }

  private progress(name: string, done: number, total: number | null): void {
    const now = this.now();
    if (this.phase?.name !== name) this.phase = { name, started: now, printedPercent: -1, printedAt: 0, eta: new EtaWindow() };
    const phase = this.phase;
    const finished = total !== null && done >= total;
    if (finished) {
      this.phase = null;
      this.clearStatus();
      return;
    }
    phase.eta.add(done - 1, now / 1000); // `done` units finished: the last one's index is done - 1
    // A phase announced (nothing counted, no total: one long operation) is said at once, and once.
    const announced = done === 0 && total === null;
    if (announced && phase.printedAt === 0) {
      phase.printedAt = now;
      this.show(progressText(name, done, total));
      return;
    }
    if (now - phase.started < PROGRESS_AFTER_MS) return;
    const text = progressText(name, done, total, total === null ? null : phase.eta.eta(total));
    if (this.out.isTTY) {
      this.out.write(`\r${text}\x1b[K`);
      this.status = true;
      return;
    }
    const percent = total ? Math.floor((100 * done) / total / PLAIN_PERCENT_STEP) * PLAIN_PERCENT_STEP : -1;
    const due = total ? percent > phase.printedPercent : now - phase.printedAt >= PLAIN_INTERVAL_MS;
    if (!due) return;
    phase.printedPercent = percent;
    phase.printedAt = now;
    this.out.write(`${text}\n`);
  }

  /** One line: on a terminal the status line, rewritten in place; elsewhere a plain line. */
  private show(text: string): void {
    if (this.out.isTTY) {
      this.out.write(`\r${text}\x1b[K`);
      this.status = true;
    } else this.out.write(`${text}\n`);
  }

  /** Clears the status line, if one is shown (before output printed elsewhere). */
  clear(): void {
    this.clearStatus();
  }

  private clearStatus(): void {
    if (!this.status) return;
    this.out.write('\r\x1b[K');
    this.status = false;
  }
}

/** The closing lines of a run: where it ended, how well it did, where its folder is (and how to continue it). */
export function formatSummary(summary: RunSummary, resumable: boolean): string {
  const percent = (value: number | null) => (value === null ? '-' : `${value.toFixed(2)}%`);
  const lines = [
    `\n${summary.status === 'completed' ? 'done' : 'stopped'}: step ${summary.step}/${summary.total_steps}, ` +
      `final top-1 ${summary.final_top1 === null ? 'not evaluated' : percent(summary.final_top1)}, best ${percent(summary.best_top1)}, ${duration(summary.elapsed_s)}`,
    `run folder: ${summary.run_dir}`,
  ];
  if (summary.tracking_error !== null) lines.splice(1, 0, `tracking error mean|K - R|/R(0): ${summary.tracking_error.toFixed(3)}`);
  if (summary.status === 'stopped' && resumable) lines.push(`to continue: trqat resume ${summary.run_dir}`);
  return lines.join('\n');
}
