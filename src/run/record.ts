import { join } from 'node:path';
import type { ControllerSettings, ResolvedConfig } from '../config/resolve.js';
import type { LayerInfo, WorkerBody } from '../bridge/protocol.js';
import type { ProcessExit } from '../bridge/launcher.js';
import { CHECKPOINTS_DIR, type CheckpointRef } from './checkpoints.js';
import { lockRunDir, readJson, removeQuietly, writeJsonAtomic } from '../files.js';
import { identities, type PluginIdentity, type Plugins } from '../schedules/plugin.js';
import { MetricsLog, type EvalRecord, type StepRecord } from './metrics.js';
import { TrqatError } from '../errors.js';
import { attempt } from './ending.js';

/** When to evaluate and checkpoint, fixed once the first rank has said how long an epoch is. */
export interface RunPlan {
  total_steps: number;
  steps_per_epoch: number;
  /** Every N steps (0: only at the end; client runs: never, the script decides). */
  eval_every: number;
  checkpoint_every: number;
  world_size: number;
  /** The running-TR momentum and TALR step size in force (explicit, the paper's defaults, or tr.auto). */
  controller: ControllerSettings;
}

/** `stopped`: ended before the last step (Ctrl-C, stop(), or a script that said bye early). */
export type RunStatus = 'running' | 'completed' | 'stopped' | 'failed';

/** `managed`: trqat's own workers (trqat train); `client`: the user's own script (trqat run, trqat serve). */
export type RunKind = 'managed' | 'client';

/** One process of the run, as it introduced itself. */
export interface RankInfo {
  rank: number;
  pid: number;
  hostname: string;
  device: string;
  device_name: string;
  torch_version: string;
  trqat_version: string;
}

/** run.json: the run's state at a glance, rewritten atomically as it changes. */
export interface RunInfo {
  kind: RunKind;
  status: RunStatus;
  /** Steps decided so far (the next step to run). */
  step: number;
  /** Step of the latest checkpoint (where a resume continues); 0 without one. */
  checkpoint_step: number;
  plan: RunPlan | null;
  started: string;
  updated: string;
  error?: string;
  ranks: RankInfo[];
  device?: string;
  layers?: LayerInfo[];
  /** The controller's plug-ins: module path and sha256 (a resume checks they are the same code). */
  plugins?: PluginIdentity[];
  /** trqat run: the command and how it ended. */
  command?: string[];
  exit?: ProcessExit;
}

export interface RunSummary {
  run_dir: string;
  status: 'completed' | 'stopped';
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
  | { type: 'listening'; endpoint: string; runDir: string; authFile: string | null }
  | { type: 'rank'; rank: RankInfo; worldSize: number }
  | { type: 'rank-left'; rank: RankInfo; reason: string }
  | { type: 'started'; runDir: string; endpoint: string; plan: RunPlan; logEvery: number; startStep: number; device: string; layers: number; quantizedWeights: number }
  | { type: 'step'; record: StepRecord; plan: RunPlan }
  | { type: 'eval'; record: EvalRecord }
  | { type: 'checkpoint'; checkpoint: CheckpointRef }
  /** How far a long phase of rank 0 is (loading the data, evaluating). */
  | { type: 'progress'; phase: string; done: number; total: number | null }
  | ViewEvent
  | { type: 'warning'; message: string };

/** What the run's views tell its listener: where the dashboard is, where the report went. */
export type ViewEvent = { type: 'dashboard'; url: string } | { type: 'report'; path: string };

export const CONFIG_FILE = 'config.json';
export const RUN_FILE = 'run.json';
export const METRICS_FILE = 'metrics.jsonl';
export const SUMMARY_FILE = 'summary.json';

/** A folder named as a run folder that is not one: a usage error (exit 2) that says what a run folder holds. */
export function notARunFolder(dir: string, why: string): TrqatError {
  return new TrqatError(
    `${dir} is not a trqat run folder (${why}); a run folder, made by trqat train or trqat run under out_dir, ` +
      `holds ${CONFIG_FILE}, ${RUN_FILE}, ${METRICS_FILE} and ${CHECKPOINTS_DIR}/`,
    2,
  );
}

export function rankInfo(hello: WorkerBody<'hello'>): RankInfo {
  const { rank, pid, hostname, device, device_name, torch_version, trqat_version } = hello;
  return { rank, pid, hostname, device, device_name, torch_version, trqat_version };
}

/**
 * The run folder's record, one writer for every kind of run: config.json, run.json (status, plan,
 * ranks), metrics.jsonl (a step line per step, an eval line after the step it follows) and
 * summary.json. Managed and client runs write the same files the same way.
 */
export class RunRecord {
  info: RunInfo;
  bestTop1: number | null = null;
  lastEval: EvalRecord | null = null;
  /** Seconds of earlier sessions of this run (a resumed run continues its clock). */
  elapsedBefore = 0;
  private readonly startedAt = Date.now();
  private metrics: MetricsLog;
  /** Last step whose line is written; evaluations after a later step wait for it. */
  private lastStep: number;
  private held: EvalRecord[] = [];

  constructor(
    readonly runDir: string,
    private config: ResolvedConfig,
    kind: RunKind,
    /** Resuming: the checkpoint's step; metrics after it are dropped (the run writes them again). */
    resumeStep: number | null,
    private readonly emit: (event: RunEvent) => void,
  ) {
    const now = new Date().toISOString();
    if (resumeStep !== null) {
      // checkpoint_step: the checkpoint the resume uses (an older one when the latest was damaged)
      this.info = { ...readJson<RunInfo>(join(runDir, RUN_FILE), 'run status'), status: 'running', checkpoint_step: resumeStep, updated: now };
      delete this.info.error;
      MetricsLog.truncate(join(runDir, METRICS_FILE), resumeStep);
      this.lastStep = resumeStep - 1;
    } else {
      this.info = { kind, status: 'running', step: 0, checkpoint_step: 0, plan: null, started: now, updated: now, ranks: [] };
      writeJsonAtomic(join(runDir, CONFIG_FILE), config);
      this.lastStep = -1;
    }
    this.metrics = new MetricsLog(join(runDir, METRICS_FILE));
    this.save();
  }

  /** The config changed under the run (a client's bit-width adopted): config.json follows. */
  updateConfig(config: ResolvedConfig): void {
    this.config = config;
    writeJsonAtomic(join(this.runDir, CONFIG_FILE), config);
  }

  addRank(rank: RankInfo): void {
    this.info.ranks = [...this.info.ranks.filter((r) => r.rank !== rank.rank), rank].sort((a, b) => a.rank - b.rank);
    this.save();
  }

  start(plan: RunPlan, ready: WorkerBody<'ready'>, startStep: number, endpoint: string, quantizedWeights: number): void {
    this.info = { ...this.info, plan, device: ready.device, layers: ready.layers, step: startStep };
    this.save();
    this.emit({
      type: 'started',
      runDir: this.runDir,
      endpoint,
      plan,
      logEvery: this.config.train.log_every,
      startStep,
      device: ready.device,
      layers: ready.layers.length,
      quantizedWeights,
    });
  }

  step(record: StepRecord): void {
    this.metrics.write(record);
    this.lastStep = record.step;
    this.info.step = record.step + 1;
    this.emit({ type: 'step', record, plan: this.info.plan! });
    const ready = this.held.filter((e) => e.step <= this.lastStep + 1);
    this.held = this.held.filter((e) => e.step > this.lastStep + 1);
    for (const evaluation of ready) this.writeEval(evaluation);
  }

  /** An evaluation after `record.step` steps: logged after the line of step `record.step - 1`. */
  eval(record: EvalRecord): void {
    this.lastEval = record;
    this.bestTop1 = Math.max(this.bestTop1 ?? -Infinity, record.top1);
    if (record.step - 1 > this.lastStep) this.held.push(record);
    else this.writeEval(record);
  }

  /** Back to a checkpoint (an automatic restart): the lines after it are dropped and written again. */
  rewind(step: number): void {
    this.metrics.close();
    MetricsLog.truncate(join(this.runDir, METRICS_FILE), step);
    this.metrics = new MetricsLog(join(this.runDir, METRICS_FILE));
    this.lastStep = step - 1;
    this.held = [];
    this.lastEval = null;
    this.set({ step });
  }

  /** True when every step line before `step` has been written (a checkpoint at `step` may commit). */
  holds(step: number): boolean {
    return this.lastStep >= step - 1;
  }

  checkpoint(ref: CheckpointRef): void {
    this.info.checkpoint_step = ref.step;
    this.save();
    this.emit({ type: 'checkpoint', checkpoint: ref });
  }

  flush(): void {
    this.metrics.flush();
  }

  elapsed(): number {
    return this.elapsedBefore + (Date.now() - this.startedAt) / 1000;
  }

  set(fields: Partial<RunInfo>): void {
    this.info = { ...this.info, ...fields };
    this.save();
  }

  /**
   * Ends the record: the final status, summary.json for a run that did not fail, the log closed.
   * Everything that can be written is, even when a part fails (a full disk); then the first
   * failure is thrown, a WriteError naming its file.
   */
  end(status: RunStatus, trackingError: number | null, error?: string): RunSummary | null {
    let failure: unknown = null;
    const attempt = (write: () => void) => {
      try {
        write();
      } catch (problem) {
        failure ??= problem;
      }
    };
    attempt(() => {
      for (const evaluation of this.held) this.writeEval(evaluation);
    });
    this.held = [];
    attempt(() => this.metrics.close());
    this.info = { ...this.info, status, ...(error ? { error } : {}) };
    attempt(() => this.save());
    if (failure !== null) throw failure;
    if (status === 'failed' || status === 'running') return null;
    const summary: RunSummary = {
      run_dir: this.runDir,
      status,
      step: this.info.step,
      total_steps: this.info.plan?.total_steps ?? 0,
      final_top1: this.lastEval?.top1 ?? null,
      best_top1: this.bestTop1,
      final_loss: this.lastEval?.loss ?? null,
      tracking_error: trackingError,
      elapsed_s: this.elapsed(),
    };
    writeJsonAtomic(join(this.runDir, SUMMARY_FILE), summary);
    return summary;
  }

  private writeEval(record: EvalRecord): void {
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

  private save(): void {
    this.info.updated = new Date().toISOString();
    writeJsonAtomic(join(this.runDir, RUN_FILE), this.info);
  }
}

/**
 * Locks a run's folder and opens its record (config.json, run.json). A new run's folder that cannot
 * even be set up (a full disk) is removed: it holds nothing yet. Returns the record and the unlock.
 */
export function openRunRecord(
  spec: { runDir: string; config: ResolvedConfig; kind: RunKind; checkpoint: CheckpointRef | null; configChanged?: boolean; command?: string[]; plugins?: Plugins },
  emit: (event: RunEvent) => void,
  warn: (message: string) => void,
): { record: RunRecord; unlock: () => void } {
  const fresh = spec.checkpoint === null;
  let unlock: () => void;
  try {
    unlock = lockRunDir(spec.runDir);
  } catch (error) {
    if (fresh) removeQuietly(spec.runDir);
    throw error;
  }
  let record: RunRecord | null = null;
  try {
    record = new RunRecord(spec.runDir, spec.config, spec.kind, spec.checkpoint?.step ?? null, emit);
    if (spec.configChanged) record.updateConfig(spec.config);
    if (spec.command) record.set({ command: spec.command });
    const plugins = spec.plugins ? identities(spec.plugins) : [];
    if (plugins.length > 0) record.set({ plugins });
    return { record, unlock };
  } catch (error) {
    if (record) attempt(() => record!.end('failed', null, (error as Error).message), warn);
    unlock();
    if (fresh) removeQuietly(spec.runDir);
    throw error;
  }
}
