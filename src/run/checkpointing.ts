import type { ResolvedConfig } from '../config/resolve.js';
import { TrqatError } from '../errors.js';
import type { WorkerBody } from '../bridge/protocol.js';
import type { ControllerState, TrController } from '../schedules/controller.js';
import { Checkpoints, CHECKPOINT_FORMAT, type CheckpointRef, type ControllerCheckpoint } from './checkpoints.js';
import { removeQuietly } from '../files.js';
import type { RunRecord } from './record.js';

interface Pending {
  step: number;
  staging: string;
  commit: (state: ControllerCheckpoint, top1: number | null) => CheckpointRef;
  /** The controller's state after the step before it, taken when the save was directed. */
  state: ControllerState;
  /** Rank 0 said it saved its part. */
  saved: boolean;
}

/**
 * A managed run's checkpoints in flight: one directed save at a time, committed once rank 0 saved it
 * and the log holds every step before it (a checkpoint never points past what the log holds).
 */
export class Checkpointing {
  private pending: Pending | null = null;

  constructor(readonly checkpoints: Checkpoints) {}

  get saving(): boolean {
    return this.pending !== null;
  }

  /** Directs a save after `step` steps: returns the staging folder rank 0 writes into. */
  begin(step: number, state: ControllerState): string {
    const { staging, commit } = this.checkpoints.begin(step);
    this.pending = { step, staging, commit, state, saved: false };
    return staging;
  }

  /** Rank 0 said `saved`. */
  saved(): void {
    if (this.pending) this.pending.saved = true;
  }

  /** Commits the pending checkpoint if rank 0 saved it and the log holds the steps before it. */
  maybeCommit(record: RunRecord, totalSteps: number, config: ResolvedConfig): void {
    const pending = this.pending;
    if (!pending?.saved || !record.holds(pending.step)) return;
    this.pending = null;
    record.flush();
    const evaluated = record.lastEval?.step === pending.step ? record.lastEval.top1 : null;
    const ref = pending.commit(
      {
        format: CHECKPOINT_FORMAT,
        step: pending.step,
        total_steps: totalSteps,
        controller: pending.state,
        best_top1: record.bestTop1,
        elapsed_s: record.elapsed(),
        config,
      },
      evaluated,
    );
    record.checkpoint(ref);
  }

  /** The run fails or restarts: a half-written checkpoint is removed, never committed. */
  discard(): void {
    if (this.pending) removeQuietly(this.pending.staging);
    this.pending = null;
  }
}

/**
 * Continues the schedules where the ranks continue: from `checkpoint` (a managed run's resume or
 * automatic restart) or from the client's saved controller state. Returns a refusal for the rank;
 * throws when the checkpoint itself is inconsistent.
 */
export function restoreController(
  controller: TrController,
  checkpoint: CheckpointRef | null,
  body: WorkerBody<'ready'>,
  record: RunRecord,
  restarted: boolean,
  warn: (message: string) => void,
): string | null {
  const start = body.start_step;
  if (checkpoint) {
    const saved = Checkpoints.readController(checkpoint);
    if (saved.step !== start) throw new TrqatError(`checkpoint ${checkpoint.path} is inconsistent: controller.json is at step ${saved.step}, worker.pt at step ${start}`);
    if (saved.total_steps !== controller.totalSteps) {
      throw new TrqatError(`checkpoint ${checkpoint.path} belongs to a ${saved.total_steps}-step plan, but the config now gives ${controller.totalSteps} steps`);
    }
    controller.loadStateDict(saved.controller);
    record.bestTop1 = saved.best_top1;
    // An automatic restart keeps this process's clock; a resume continues the earlier ones'.
    if (!restarted) record.elapsedBefore = saved.elapsed_s;
    return null;
  }
  const state = body.controller_state ?? null;
  if (state) {
    if (state.last_step !== start - 1) return `controller_state is at step ${state.last_step}, but the client continues at step ${start} (expected ${start - 1})`;
    try {
      controller.loadStateDict(state as unknown as ControllerState);
    } catch (error) {
      return `cannot continue from the client's controller_state: ${(error as Error).message}`;
    }
  } else if (start > 0) {
    controller.loadStateDict({ ...controller.stateDict(), last_step: start - 1 });
    warn(`the client continues at step ${start} without controller state: K restarts at 0 and U at U(0) (save client.state_dict() in your checkpoints)`);
  }
  return null;
}
