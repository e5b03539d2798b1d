import { compareTable, groupTable } from '../dashboard/compare.js';
import type { RunEvent } from '../run/record.js';
import type { PlannedRun } from '../sweep/plan.js';
import { summarize, sweep, sweepPlan, type SweepEvent, type SweepSummary } from '../sweep/sweep.js';
import { duration } from '../format.js';
import type { Output } from './progress.js';
import { stopOnSignals } from './signals.js';

export interface SweepCommandOptions {
  out?: string;
  plan?: boolean;
  only?: number;
  summary?: boolean;
}

/** `trqat sweep FILE [--out DIR] [--plan | --only I | --summary]`. */
export async function sweepCommand(file: string, options: SweepCommandOptions): Promise<number> {
  if (options.plan) {
    const plan = sweepPlan(file, options.out);
    for (const run of plan.runs) console.log(`${run.index}\t${run.name}\t${run.sets.map((set) => `--set ${set}`).join(' ')}`);
    console.error(`${plan.runs.length} runs into ${plan.dir}; one per SLURM array task: sbatch --array=0-${plan.runs.length - 1} with trqat sweep ${file} --only $SLURM_ARRAY_TASK_ID (docs/sweeps.md)`);
    return 0;
  }
  if (options.summary) {
    printSummary(await summarize(sweepPlan(file, options.out)));
    return 0;
  }
  const now = new AbortController();
  const stop = stopOnSignals(
    {
      first: 'stopping the sweep: no new run starts, the running ones stop after this step with a checkpoint (Ctrl-C again to stop at once)',
      second: 'stopping at once; the last checkpoints are kept; run the same command again to continue',
    },
    () => now.abort(),
  );
  const table = new SweepTable(process.stdout, process.stderr);
  try {
    const result = await sweep(file, { out: options.out, only: options.only, signal: stop.signal, signalNow: now.signal, onEvent: (event) => table.event(event) });
    table.close();
    if (result.summary) printSummary(result.summary);
    console.log(`sweep folder: ${result.dir}`);
    if (result.status === 'stopped') console.log('stopped: run the same command again to continue (finished runs are not run again)');
    if (result.status === 'failed') console.log('some runs failed (above); run the same command again to retry them');
    return result.status === 'completed' ? 0 : result.status === 'stopped' ? 130 : 1;
  } finally {
    table.close();
    stop.release();
  }
}

function printSummary(summary: SweepSummary): void {
  console.log(`\n${compareTable(summary.rows)}\n\nby setting (mean ± std over seeds):\n${groupTable(summary.groups)}`);
  console.log(`report ${summary.report}`);
}

/** A running run's line in the live table. */
interface Live {
  run: PlannedRun;
  step: number;
  total: number | null;
  top1: number | null;
  rate: number | null;
}

/** Redraw the live table at most this often. */
const REDRAW_MS = 500;

/**
 * The sweep's progress: a line per run that starts, ends or is skipped (fit for logs), and on a
 * terminal, below them, a live table of the running runs (step, last top-1, speed) and the counts.
 */
export class SweepTable {
  private total = 0;
  private done = 0;
  private failed = 0;
  private readonly live = new Map<number, Live>();
  private drawn = 0;
  private lastDraw = 0;
  private width = 0;
  private readonly started = Date.now();

  constructor(
    private readonly out: Output,
    private readonly err: Output,
  ) {}

  event(event: SweepEvent): void {
    switch (event.type) {
      case 'plan': {
        this.total = event.plan.runs.length;
        this.width = Math.max(...event.plan.runs.map((run) => run.name.length));
        this.done = event.state.runs.filter((run) => run.status === 'completed').length;
        const gpus = event.slots ? `, GPUs ${event.slots.map((slot) => slot.join('+')).join(' ')}` : '';
        this.line(`sweep: ${this.total} runs (${this.done} already completed) into ${event.plan.dir}, ${event.concurrency} at once${gpus}`);
        break;
      }
      case 'run-skip':
        this.line(`${this.tag(event.run)} already completed, not run again`);
        break;
      case 'run-start': {
        this.live.set(event.run.index, { run: event.run, step: 0, total: null, top1: null, rate: null });
        const how = event.how === 'resume' ? 'resuming from its checkpoint' : event.how === 'restart' ? 'starting again (it had no checkpoint)' : 'starting';
        this.line(`${this.tag(event.run)} ${how}${event.gpus ? ` on GPU ${event.gpus.join(',')}` : ''}`);
        break;
      }
      case 'run-event':
        this.runEvent(event.run, event.event);
        break;
      case 'run-end': {
        this.live.delete(event.run.index);
        if (event.error !== null) {
          this.failed++;
          this.line(`${this.tag(event.run)} FAILED: ${event.error.split('\n')[0]}`, this.err);
        } else if (event.summary?.status === 'completed') {
          this.done++;
          const top1 = event.summary.final_top1 === null ? '-' : `${event.summary.final_top1.toFixed(2)}%`;
          this.line(`${this.tag(event.run)} completed: top-1 ${top1}, ${duration(event.summary.elapsed_s)}`);
        } else {
          this.line(`${this.tag(event.run)} stopped at step ${event.summary?.step ?? '?'} (resumable)`);
        }
        break;
      }
    }
  }

  /** Clears the live table (before the final output). */
  close(): void {
    this.clear();
  }

  private runEvent(run: PlannedRun, event: RunEvent): void {
    const live = this.live.get(run.index);
    if (!live) return;
    if (event.type === 'step') {
      live.step = event.record.step + 1;
      live.total = event.plan.total_steps;
      live.rate = event.record.steps_per_s ?? live.rate;
    } else if (event.type === 'eval') {
      live.top1 = event.record.top1;
    } else if (event.type === 'started' && event.startStep > 0) {
      live.step = event.startStep;
    } else if (event.type === 'warning') {
      this.line(`${this.tag(run)} warning: ${event.message}`, this.err);
      return;
    } else return;
    if (Date.now() - this.lastDraw >= REDRAW_MS) this.draw();
  }

  private tag(run: PlannedRun): string {
    return `[${run.index + 1}/${this.total}] ${run.name.padEnd(this.width)}`;
  }

  /** A permanent line, above the live table. */
  private line(text: string, to: Output = this.out): void {
    this.clear();
    to.write(`${text}\n`);
    this.draw();
  }

  private draw(): void {
    if (!this.out.isTTY) return;
    this.clear();
    const rows = [...this.live.values()].map((live) => {
      const steps = live.total === null ? `step ${live.step}` : `step ${live.step}/${live.total}`;
      const eta = live.rate && live.total !== null ? `  ETA ${duration((live.total - live.step) / live.rate)}` : '';
      return `  ${live.run.name.padEnd(this.width)}  ${steps.padEnd(16)}  top-1 ${live.top1 === null ? '-'.padStart(6) : `${live.top1.toFixed(2)}%`.padStart(6)}${eta}`;
    });
    const pending = this.total - this.done - this.failed - this.live.size;
    rows.push(`  ${this.done}/${this.total} completed, ${this.live.size} running, ${Math.max(0, pending)} to go, ${this.failed} failed  (${duration((Date.now() - this.started) / 1000)})`);
    this.out.write(`${rows.join('\n')}\n`);
    this.drawn = rows.length;
    this.lastDraw = Date.now();
  }

  private clear(): void {
    if (this.drawn === 0) return;
    this.out.write(`\x1b[${this.drawn}A\x1b[J`);
    this.drawn = 0;
  }
}
