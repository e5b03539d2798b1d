import type { EvalRecord } from './metrics.js';
import type { RunPlan } from './record.js';
import type { WorkerBody } from '../bridge/protocol.js';

/** What the plan asks after step t: evaluate, save (the checkpoint's step), stop. */
export interface PlannedDirectives {
  eval: boolean;
  saveStep: number | null;
  stop: boolean;
}

/**
 * Pure: the directives of step t. Without `managed` (a client's script decides its own evaluation
 * and checkpoints) only stop; with train.keep_best every evaluation is followed by a checkpoint, so
 * that the best one exists to be kept.
 */
export function plannedDirectives(plan: RunPlan, t: number, stopRequested: boolean, managed: boolean, keepBest: boolean): PlannedDirectives {
  const done = t + 1;
  const final = done >= plan.total_steps;
  const stop = final || stopRequested;
  if (!managed) return { eval: false, saveStep: null, stop };
  const boundary = (every: number) => final || (every > 0 && done % every === 0);
  const evaluate = boundary(plan.eval_every);
  const save = stop || boundary(plan.checkpoint_every) || (evaluate && keepBest);
  return { eval: evaluate, saveStep: save ? done : null, stop };
}

/** The eval line of an evaluation reported after `step` steps. */
export function evalRecord(body: WorkerBody<'evaluated'>, step: number, stepsPerEpoch: number, trackingError: number | null): EvalRecord {
  return {
    type: 'eval',
    step,
    epoch: step / stepsPerEpoch,
    top1: body.top1,
    loss: body.loss,
    samples: body.samples,
    seconds: body.seconds,
    tracking_error: trackingError,
    time: Date.now() / 1000,
  };
}
