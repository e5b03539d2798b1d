import type { ResolvedConfig } from '../config/resolve.js';
import type { ControllerBodies, LayerInfo, LrBody, WorkerBody } from '../bridge/protocol.js';
import { TrController } from '../schedules/controller.js';
import type { Plugins } from '../schedules/plugin.js';
import { joinRefusal } from './admission.js';
import { restoreController, type Checkpointing } from './checkpointing.js';
import type { CheckpointRef } from './checkpoints.js';
import { divergenceFailure } from './ending.js';
import type { EvalRecord, StepRecord } from './metrics.js';
import { planRun } from './plan.js';
import type { RunPolicy } from './policy.js';
import type { RunPlan, RunRecord } from './record.js';
import { StepLoop, type Directives } from './step-loop.js';
import type { Watchdog } from './watchdog.js';

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

/** What a planned run's steps need of their run. */
export interface StepsHost {
  readonly record: RunRecord;
  readonly checkpointing: Checkpointing;
  readonly watchdog: Watchdog;
  /** The config in force (it may have followed the model at the plan). */
  config(): ResolvedConfig;
  /** The controller's plug-ins (loadPlugins); none: the built-in schedules. */
  readonly plugins: Plugins | undefined;
  /** The config follows the model (plan.ts): the run runs with it, config.json records it. */
  adopt(config: ResolvedConfig): void;
  stopRequested(): boolean;
  /** Sends a step's decision to `rank`'s session, if it is still there. */
  send(rank: number, lr: LrBody): void;
  warn(message: string): void;
  fail(error: Error): void;
}

/**
 * A planned run: its controller and step loop from the first rank's ready on, the directives of
 * every step, its lines in the record, the checkpoints it commits. Restarted ranks get a new one.
 */
export class Steps {
  readonly loop: StepLoop;
  private lastEvalStep = -1;
  /** The ready the plan was made from: every further rank must ask for the same. */
  private first!: { rank: number; body: WorkerBody<'ready'> };

  private constructor(
    private readonly host: StepsHost,
    readonly plan: RunPlan,
    readonly controller: TrController,
    layers: readonly LayerInfo[],
    readonly startStep: number,
    /** Evaluate and save directives (a managed run). */
    private readonly managed: boolean,
  ) {
    this.loop = new StepLoop(controller, layers, plan.total_steps, plan.steps_per_epoch, plan.world_size, startStep, {
      directives: (t) => this.directives(t),
      answer: (ranks, lr) => this.answer(ranks, lr),
      record: (record) => this.onRecord(record),
      warn: (message) => host.warn(message),
    });
  }

  /** The first ready: plans the run (pure, plan.ts), restores the schedules, records the start. Returns a refusal instead. */
  static begin(host: StepsHost, policy: RunPolicy, rank: number, body: WorkerBody<'ready'>, worldSize: number, resumeFrom: CheckpointRef | null, restarted: boolean, endpoint: string): Steps | string {
    const planned = planRun(policy, host.config(), body, worldSize);
    for (const warning of planned.warnings ?? []) host.warn(warning);
    if ('refuse' in planned) return planned.refuse;
    if (planned.configChanged) host.adopt(planned.config);
    const { plan } = planned;
    const controller = new TrController(planned.config, plan.total_steps, body.layers.map((layer) => layer.numel), body.steps_per_epoch, host.plugins);
    const steps = new Steps(host, plan, controller, body.layers, body.start_step, policy.directives);
    steps.first = { rank, body };
    const restored = restoreController(controller, resumeFrom, body, host.record, restarted, (message) => host.warn(message));
    if (restored !== null) return restored;
    host.record.start(plan, body, body.start_step, endpoint, controller.quantizedWeights);
    host.watchdog.progress();
    return steps;
  }

  /** The plan every rank gets. */
  body(): ControllerBodies['plan'] {
    return { total_steps: this.plan.total_steps, steps_per_epoch: this.plan.steps_per_epoch, start_step: this.startStep };
  }

  /** A further rank's ready: the same model, start and plan as the first rank's, or the refusal. */
  join(rank: number, body: WorkerBody<'ready'>): string | null {
    return joinRefusal(this.first, rank, body);
  }

  /** A rank's report of a step: returns the refusal it gets, if any (StepLoop.report). */
  step(rank: number, body: WorkerBody<'step'>): string | null {
    this.host.watchdog.set(rank, `training step ${body.step}`);
    return this.loop.report(rank, body);
  }

  evaluated(rank: number, body: WorkerBody<'evaluated'>): void {
    this.loop.stats(rank, body.last);
    const step = this.loop.next;
    if (step !== this.lastEvalStep) {
      // every rank of a script may report the same evaluation: the first is logged
      this.lastEvalStep = step;
      this.host.record.eval(evalRecord(body, step, this.plan.steps_per_epoch, this.trackingError()));
      this.host.watchdog.progress();
    }
    this.host.watchdog.set(rank, this.host.checkpointing.saving ? `saving the checkpoint of step ${step}` : `training step ${step}`);
  }

  saved(rank: number, body: WorkerBody<'saved'>): void {
    this.loop.stats(rank, body.last);
    this.host.checkpointing.saved();
    this.commit();
    this.host.watchdog.set(rank, `training step ${this.loop.next}`);
  }

  /** A checkpoint commits once rank 0 saved it and the log holds every step before it. */
  commit(): void {
    this.host.checkpointing.maybeCommit(this.host.record, this.plan.total_steps, this.host.config());
  }

  /** Every step decided and no checkpoint left half-done. */
  get complete(): boolean {
    return this.loop.next >= this.plan.total_steps && !this.host.checkpointing.saving;
  }

  trackingError(): number | null {
    return this.host.config().mode === 'tr' ? this.controller.trackingError : null;
  }

  /** " at step N of T". */
  position(): string {
    return ` at step ${this.loop.next} of ${this.plan.total_steps}`;
  }

  private directives(t: number): Directives {
    const planned = plannedDirectives(this.plan, t, this.host.stopRequested(), this.managed, this.host.config().train.keep_best);
    const save = planned.saveStep === null ? null : this.host.checkpointing.begin(planned.saveStep, this.controller.stateDict());
    return { eval: planned.eval, save, stop: planned.stop };
  }

  private answer(ranks: number[], lr: LrBody): void {
    for (const rank of ranks) {
      this.host.send(rank, lr);
      const then = lr.eval ? ' and evaluating' : lr.save ? ` and saving the checkpoint of step ${lr.step + 1}` : '';
      this.host.watchdog.set(rank, `finishing step ${lr.step}${then}`);
    }
    this.host.watchdog.progress();
  }

  private onRecord(record: StepRecord): void {
    if (!Number.isFinite(record.loss) && record.samples > 0) return this.host.fail(divergenceFailure(record, this.host.record.info.checkpoint_step));
    this.host.record.step(record);
    this.commit();
  }
}
