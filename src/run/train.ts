import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ResolvedConfig } from '../config/resolve.js';
import { controllerSettings, r0ForLayers, totalSteps, type ControllerSettings } from '../config/resolve.js';
import { TrqatError } from '../errors.js';
import type { WorkerBody } from '../bridge/protocol.js';
import { WorkerLink } from '../bridge/worker-link.js';
import { TrController, type StepDecision } from '../schedules/controller.js';
import { Checkpoints, CHECKPOINT_FORMAT, type CheckpointRef } from './checkpoints.js';
import { createRunDir, lockRunDir, readJson, writeJsonAtomic } from './files.js';
import { MetricsLog, StepRate, stepRecord, type EvalRecord, type StepRecord, type StepStats } from './metrics.js';

/** When to evaluate and checkpoint, fixed once the worker has said how long an epoch is. */
export interface RunPlan {
  total_steps: number;
  steps_per_epoch: number;
  eval_every: number;
  checkpoint_every: number;
  /** The running-TR momentum and TALR step size in force (explicit, the paper's defaults, or tr.auto). */
  controller: ControllerSettings;
}

export type RunStatus = 'running' | 'completed' | 'interrupted' | 'failed';

/** run.json: the run's state at a glance, rewritten atomically as it changes. */
export interface RunInfo {
  status: RunStatus;
  /** Step of the latest checkpoint (where a resume continues). */
  checkpoint_step: number;
  plan: RunPlan | null;
  started: string;
  updated: string;
  error?: string;
  worker?: WorkerBody<'hello'>;
  device?: string;
  layers?: WorkerBody<'ready'>['layers'];
}

export interface RunSummary {
  run_dir: string;
  status: 'completed' | 'interrupted';
  step: number;
  total_steps: number;
  final_top1: number | null;
  best_top1: number | null;
  final_loss: number | null;
  /** Mean |K - R| / R(0) after the settling window; null in baseline mode. */
  tracking_error: number | null;
  elapsed_s: number;
}

export type RunEvent =
  | { type: 'started'; runDir: string; endpoint: string; plan: RunPlan; logEvery: number; startStep: number; device: string; layers: number; quantizedWeights: number }
  | { type: 'step'; record: StepRecord; plan: RunPlan }
  | { type: 'eval'; record: EvalRecord }
  | { type: 'checkpoint'; checkpoint: CheckpointRef }
  | { type: 'warning'; message: string };

export interface RunOptions {
  onEvent?: (event: RunEvent) => void;
  /** Aborting stops the run at the next step, writes a checkpoint and resolves with status "interrupted". */
  signal?: AbortSignal;
}

const CONFIG_FILE = 'config.json';
const RUN_FILE = 'run.json';
const METRICS_FILE = 'metrics.jsonl';

/** Creates a new run folder under `config.out_dir` and trains it to the end. */
export async function train(config: ResolvedConfig, options: RunOptions = {}): Promise<RunSummary> {
  const runDir = createRunDir(config);
  const unlock = lockRunDir(runDir);
  writeJsonAtomic(join(runDir, CONFIG_FILE), config);
  return new Run(runDir, config, null, options, unlock).execute();
}

/** `overrides` may change settings that do not touch the schedule (the CLI allows worker.* and a few more). */
export type ResumeOptions = RunOptions & { overrides?: (config: ResolvedConfig) => ResolvedConfig };

/** Continues a run from its latest checkpoint, with the schedules exactly where they stopped. */
export async function resume(runDir: string, options: ResumeOptions = {}): Promise<RunSummary> {
  const dir = resolve(runDir);
  if (!existsSync(join(dir, CONFIG_FILE))) throw new TrqatError(`${dir} is not a trqat run folder: ${CONFIG_FILE} is missing`);
  const unlock = lockRunDir(dir);
  try {
    return await resumeLocked(dir, options, unlock);
  } catch (error) {
    unlock();
    throw error;
  }
}

async function resumeLocked(dir: string, options: ResumeOptions, unlock: () => void): Promise<RunSummary> {
  const saved = readJson<ResolvedConfig>(join(dir, CONFIG_FILE), 'run config');
  const config = options.overrides ? options.overrides(saved) : saved;
  const checkpoint = new Checkpoints(dir, config.train.keep_checkpoints).latest();
  if (!checkpoint) throw new TrqatError(`${dir} has no checkpoint to resume from; start the run again with "trqat train"`);
  const info = readJson<RunInfo>(join(dir, RUN_FILE), 'run status');
  if (info.status === 'completed') throw new TrqatError(`${dir} has already completed (${info.checkpoint_step} of ${info.plan?.total_steps} steps)`);
  if (config !== saved) writeJsonAtomic(join(dir, CONFIG_FILE), config);
  return new Run(dir, config, checkpoint, options, unlock).execute();
}


/** A pending step: decided and sent, waiting for the worker to report its loss. */
interface PendingStep {
  decision: StepDecision;
  counts: number[] | null;
}

/** One training session over a run folder: the plan loop of train chunks, evaluations and checkpoints. */
class Run {
  private readonly metrics: MetricsLog;
  private readonly checkpoints: Checkpoints;
  private info: RunInfo;
  private link: WorkerLink | null = null;
  private controller: TrController | null = null;
  private plan: RunPlan | null = null;
  private step = 0;
  private bestTop1: number | null = null;
  private lastEval: EvalRecord | null = null;
  private elapsedBefore = 0;
  private readonly startedAt = Date.now();
  private readonly rate = new StepRate();

  constructor(
    private readonly runDir: string,
    private config: ResolvedConfig,
    private readonly checkpoint: CheckpointRef | null,
    private readonly options: RunOptions,
    private readonly unlock: () => void,
  ) {
    const now = new Date().toISOString();
    this.info = checkpoint
      ? { ...readJson<RunInfo>(join(runDir, RUN_FILE), 'run status'), status: 'running', updated: now }
      : { status: 'running', checkpoint_step: 0, plan: null, started: now, updated: now };
    delete this.info.error;
    if (checkpoint) MetricsLog.truncate(join(runDir, METRICS_FILE), checkpoint.step);
    this.metrics = new MetricsLog(join(runDir, METRICS_FILE));
    this.checkpoints = new Checkpoints(runDir, config.train.keep_checkpoints, config.train.keep_best);
  }

  async execute(): Promise<RunSummary> {
    this.saveInfo();
    // A second Ctrl-C exits the process at once: keep the log, say how the run ended, free the folder.
    const onExit = () => {
      this.metrics.flush();
      if (this.info.status === 'running') this.setStatus('interrupted', 'stopped at once; resume continues from the last checkpoint');
      this.unlock();
    };
    process.once('exit', onExit);
    try {
      await this.connect();
      const interrupted = await this.loop();
      await this.link!.shutdown();
      this.setStatus(interrupted ? 'interrupted' : 'completed');
      return this.summary(interrupted ? 'interrupted' : 'completed');
    } catch (error) {
      this.setStatus('failed', (error as Error).message);
      if (this.link) await this.link.close();
      throw error;
    } finally {
      process.off('exit', onExit);
      this.metrics.close();
      this.unlock();
    }
  }

  private emit(event: RunEvent): void {
    this.options.onEvent?.(event);
  }

  private async connect(): Promise<void> {
    const link = await WorkerLink.start({
      config: this.config,
      resume: this.checkpoint?.path ?? null,
      logPath: join(this.runDir, 'worker.log'),
      warn: (message) => this.emit({ type: 'warning', message }),
    });
    this.link = link;
    const ready = link.ready!;
    const r0 = r0ForLayers(this.config, ready.layers); // mixed bit-widths (quant.layer_bits): R(0) from the layers
    if (r0 !== this.config.tr.r0) writeJsonAtomic(join(this.runDir, CONFIG_FILE), (this.config = { ...this.config, tr: { ...this.config.tr, r0 } }));
    const total = totalSteps(this.config, ready.steps_per_epoch);
    const evalEvery = this.config.train.eval_every ?? ready.steps_per_epoch;
    this.plan = {
      total_steps: total,
      steps_per_epoch: ready.steps_per_epoch,
      eval_every: evalEvery,
      checkpoint_every: this.config.train.checkpoint_every ?? evalEvery,
      controller: controllerSettings(this.config, total),
    };
    this.controller = new TrController(this.config, total, ready.layers.map((layer) => layer.numel));
    this.step = ready.start_step;
    if (this.checkpoint) this.restore(ready.start_step);
    this.info = { ...this.info, plan: this.plan, worker: link.hello!, device: ready.device, layers: ready.layers };
    this.saveInfo();
    this.emit({
      type: 'started',
      runDir: this.runDir,
      endpoint: link.endpoint,
      plan: this.plan,
      logEvery: this.config.train.log_every,
      startStep: this.step,
      device: ready.device,
      layers: ready.layers.length,
      quantizedWeights: this.controller.quantizedWeights,
    });
  }

  private restore(workerStep: number): void {
    const saved = Checkpoints.readController(this.checkpoint!);
    if (saved.step !== workerStep) {
      throw new TrqatError(`checkpoint ${this.checkpoint!.path} is inconsistent: controller.json is at step ${saved.step}, worker.pt at step ${workerStep}`);
    }
    if (saved.total_steps !== this.plan!.total_steps) {
      throw new TrqatError(`checkpoint ${this.checkpoint!.path} belongs to a ${saved.total_steps}-step plan, but the config now gives ${this.plan!.total_steps} steps`);
    }
    this.controller!.loadStateDict(saved.controller);
    this.bestTop1 = saved.best_top1;
    this.elapsedBefore = saved.elapsed_s;
  }

  /** Trains to the end of the plan; returns true when stopped early by the abort signal. */
  private async loop(): Promise<boolean> {
    const plan = this.plan!;
    const isBoundary = (step: number, every: number) => step === plan.total_steps || (every > 0 && step % every === 0);
    while (this.step < plan.total_steps) {
      const end = Math.min(plan.total_steps, nextMultiple(this.step, plan.eval_every), nextMultiple(this.step, plan.checkpoint_every));
      await this.trainChunk(this.step, end);
      // A stop that lands on the last step of a chunk still gets that boundary's evaluation.
      if (isBoundary(this.step, plan.eval_every)) await this.evaluate();
      if (this.options.signal?.aborted) {
        await this.saveCheckpoint();
        return this.step < plan.total_steps;
      }
      if (isBoundary(this.step, plan.checkpoint_every) || this.checkpoints.isNewBest(this.evalTop1())) await this.saveCheckpoint();
    }
    return false;
  }

  private async trainChunk(start: number, end: number): Promise<void> {
    const link = this.link!;
    const timeout = this.config.worker.command_timeout_ms;
    await link.begin('train', { start, end }, `training steps ${start}..${end - 1}`);
    let pending: PendingStep | null = null;
    let last = end;
    for (let t = start; t < last; t++) {
      link.describe(`training step ${t}`);
      const report = (await link.next('step', timeout)).body;
      if (report.step !== t) throw new TrqatError(`protocol violation: the worker reported step ${report.step}, expected ${t}`);
      if (report.counts !== null && report.counts.length !== this.controller!.layerSizes.length) {
        throw new TrqatError(`protocol violation: the worker reported ${report.counts.length} per-layer counts for ${this.controller!.layerSizes.length} quantized layers`);
      }
      if (pending) this.record(pending, report);
      const decision = this.controller!.step(t, report.counts);
      const stop = this.options.signal?.aborted === true && t + 1 < end;
      await link.send('lr', { step: t, lr_quant: decision.lr_quant, lr_other: decision.lr_other, stop });
      pending = { decision, counts: report.counts };
      if (stop) last = t + 1;
    }
    const done = (await link.next('trained', timeout)).body;
    link.finish();
    if (done.end !== last) throw new TrqatError(`protocol violation: the worker stopped at step ${done.end}, expected ${last}`);
    if (pending) this.record(pending, done);
    this.step = last;
  }

  private record(pending: PendingStep, stats: StepStats): void {
    if (stats.loss !== null && !Number.isFinite(stats.loss)) {
      throw new TrqatError(
        `training diverged: the loss of step ${pending.decision.step} is ${stats.loss}; lower optimizer.lr (or tr.talr.u0), ` +
          'or set train.grad_clip' +
          (this.info.checkpoint_step > 0 ? ` (the last checkpoint, step ${this.info.checkpoint_step}, is intact)` : ''),
      );
    }
    const now = Date.now();
    const record = stepRecord(pending.decision, pending.counts, stats, this.plan!.steps_per_epoch, this.rate.tick(now), now);
    this.metrics.write(record);
    this.emit({ type: 'step', record, plan: this.plan! });
  }

  private async evaluate(): Promise<void> {
    const result = await this.link!.command('eval', {}, 'evaluated', `evaluating after step ${this.step}`);
    const record: EvalRecord = {
      type: 'eval',
      step: this.step,
      epoch: this.step / this.plan!.steps_per_epoch,
      ...result,
      tracking_error: this.config.mode === 'tr' ? this.controller!.trackingError : null,
      time: Date.now() / 1000,
    };
    this.lastEval = record;
    this.bestTop1 = Math.max(this.bestTop1 ?? -Infinity, record.top1);
    this.metrics.write(record);
    this.metrics.flush();
    this.emit({ type: 'eval', record });
    const limit = this.config.tr.warn_tracking_error;
    if (record.tracking_error !== null && record.tracking_error > limit) {
      this.emit({
        type: 'warning',
        message:
          `K is far from its target R (tracking error ${record.tracking_error.toFixed(2)} > ${limit}): U reacts too slowly for this run length; ` +
          'raise tr.talr.eta, lower tr.momentum, or set tr.auto=true',
      });
    }
  }

  private async saveCheckpoint(): Promise<void> {
    const { staging, commit } = this.checkpoints.begin(this.step);
    await this.link!.command('save', { path: staging }, 'saved', `saving the checkpoint of step ${this.step}`);
    // Metrics first: a checkpoint never points past what the log holds.
    this.metrics.flush();
    const checkpoint = commit({
      format: CHECKPOINT_FORMAT,
      step: this.step,
      total_steps: this.plan!.total_steps,
      controller: this.controller!.stateDict(),
      best_top1: this.bestTop1,
      elapsed_s: this.elapsed(),
    }, this.evalTop1());
    this.info.checkpoint_step = this.step;
    this.saveInfo();
    this.emit({ type: 'checkpoint', checkpoint });
  }

  /** The top-1 of an evaluation of the current step, if there was one (train.keep_best). */
  private evalTop1(): number | null {
    return this.lastEval?.step === this.step ? this.lastEval.top1 : null;
  }

  private elapsed(): number {
    return this.elapsedBefore + (Date.now() - this.startedAt) / 1000;
  }

  private setStatus(status: RunStatus, error?: string): void {
    this.info = { ...this.info, status, ...(error ? { error } : {}) };
    this.saveInfo();
  }

  private saveInfo(): void {
    this.info.updated = new Date().toISOString();
    writeJsonAtomic(join(this.runDir, RUN_FILE), this.info);
  }

  private summary(status: RunSummary['status']): RunSummary {
    const summary: RunSummary = {
      run_dir: this.runDir,
      status,
      step: this.step,
      total_steps: this.plan!.total_steps,
      final_top1: this.lastEval?.top1 ?? null,
      best_top1: this.bestTop1,
      final_loss: this.lastEval?.loss ?? null,
      tracking_error: this.config.mode === 'tr' ? this.controller!.trackingError : null,
      elapsed_s: this.elapsed(),
    };
    writeJsonAtomic(join(this.runDir, 'summary.json'), summary);
    return summary;
  }
}

/** The next multiple of `every` after `step`; Infinity when `every` is 0 (only at the end). */
function nextMultiple(step: number, every: number): number {
  return every > 0 ? (Math.floor(step / every) + 1) * every : Infinity;
}
