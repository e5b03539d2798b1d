import type { CheckpointRef, Checkpoints } from './checkpoints.js';
import { restartLimitFailure, RunFailure } from './ending.js';

/** What a restart does to its run: stops every rank, then starts them again from a checkpoint. */
export interface RestartHost {
  warn(message: string): void;
  fail(error: Error): void;
  /** Stops every rank and forgets it (its session, its process, its clock, the checkpoint in flight); `reason` goes to the ranks. */
  stopRanks(reason: string): Promise<void>;
  /** Starts the ranks again, the record rewound to `step` and the run to be planned again. */
  startRanks(step: number): Promise<void>;
}

/**
 * Automatic restarts of a run's ranks, and the checkpoint they restore from. A rank died or hung: a
 * run whose ranks this controller started restarts them all from the last checkpoint, up to `max`
 * times (worker.max_restarts) within `windowMs` (worker.restart_window_ms); the log is rewound to the
 * checkpoint and written again, so it stays continuous. Otherwise the run fails.
 */
export class Restarts {
  private readonly times: number[] = [];
  /** The checkpoint the ranks restore from: the resumed one, then the latest after an automatic restart. */
  resumeFrom: CheckpointRef | null;

  constructor(
    private readonly checkpoints: Checkpoints,
    resumeFrom: CheckpointRef | null,
    /** The run started its ranks and may start them again (the policy's `restartable`). */
    private readonly restartable: boolean,
    private readonly max: number,
    private readonly windowMs: number,
    private readonly host: RestartHost,
  ) {
    this.resumeFrom = resumeFrom;
  }

  /** Restarts so far (any: a restarted run keeps its own clock). */
  get count(): number {
    return this.times.length;
  }

  /** Those within the window now. */
  recent(now = Date.now()): number {
    return this.times.filter((at) => now - at < this.windowMs).length;
  }

  /** A rank died or hung (`error` says how): every rank restarts from the latest checkpoint, or the run fails. */
  crash(error: Error, now = Date.now()): void {
    const next = this.afterCrash(error, now);
    if ('fail' in next) return this.host.fail(next.fail);
    const count = ` (restart ${next.restart} of at most ${this.max})`;
    void this.restart((from) => this.host.warn(`${error.message.split('\n')[0]}; restarting every rank from ${from}${count}`)).catch((failure: Error) => this.host.fail(failure));
  }

  /**
   * The worker cannot use the checkpoint it was to resume from (its worker.pt is unreadable or
   * crafted): it is skipped like a damaged one, and the ranks start again from the newest intact
   * one before it (not counted as a restart). Ranks this controller did not start cannot be restarted.
   */
  fallBack(reason: string): void {
    const refused = this.resumeFrom!;
    this.checkpoints.refuse(refused, reason);
    if (!this.restartable) {
      this.host.fail(new RunFailure(`checkpoint ${refused.path} was refused by the worker: ${reason}; resume the run again to continue from an earlier checkpoint`));
      return;
    }
    void this.restart(null).catch((failure: Error) => this.host.fail(failure));
  }

  /** The number of the restart to make now (within the window), or the failure that ends the run. */
  private afterCrash(error: Error, now: number): { restart: number } | { fail: Error } {
    if (!this.restartable) return { fail: error };
    const recent = this.recent(now);
    if (recent >= this.max) return { fail: this.max === 0 ? error : restartLimitFailure(error, recent, this.windowMs, this.max) };
    this.times.push(now);
    return { restart: recent + 1 };
  }

  /** Stops every rank and starts them again from the newest intact checkpoint; `say` hears where from. */
  private async restart(say: ((from: string) => void) | null): Promise<void> {
    const checkpoint = this.checkpoints.latest((message) => this.host.warn(message));
    const from = checkpoint ? `the checkpoint of step ${checkpoint.step}` : 'the start (no checkpoint yet)';
    say?.(from);
    await this.host.stopRanks(`restarting from ${from}`);
    this.resumeFrom = checkpoint;
    await this.host.startRanks(checkpoint?.step ?? 0);
  }
}
