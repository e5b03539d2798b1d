import { basename } from 'node:path';
import { DISTANCE_BINS, type LayerInfo, type TransitionDistance } from '../bridge/protocol.js';
import type { ResolvedConfig } from '../config/resolve.js';
import type { EvalRecord, MetricsRecord, StepRecord } from '../run/metrics.js';
import type { RunInfo, RunSummary } from '../run/record.js';
import { EtaWindow } from '../eta.js';
import { BinnedRows, Columns } from './series.js';

/** The scalar metrics of a step line kept at full resolution. */
export const SCALARS = ['step', 'k', 'K', 'R', 'U', 'lr_other', 'loss', 'acc', 'steps_per_s', 'time'] as const;
export type Scalar = (typeof SCALARS)[number];

/** run.json as the dashboard reads it (older run folders: `mode: "client"` for client runs, `kind` missing). */
export type RunFileInfo = Omit<RunInfo, 'status' | 'kind' | 'ranks'> & { status: string; kind?: string; mode?: string; ranks?: RunInfo['ranks'] };

/** The run's files besides the metrics log; any of them may be missing while a run starts. */
export interface RunMeta {
  config: ResolvedConfig | null;
  info: RunFileInfo | null;
  summary: RunSummary | null;
}

/** The last report of a long phase (loading data, evaluating). */
export interface Activity {
  phase: string;
  done: number;
  total: number | null;
}

/**
 * One run's record in memory, in the shapes the dashboard draws from (series.ts): fed line by line
 * from metrics.jsonl (reader.ts) or record by record from a live run (live.ts), the same records
 * either way. `version` changes with every change, so a page can tell when to fetch again.
 */
export class RunData {
  readonly scalars = new Columns(SCALARS);
  readonly evals: EvalRecord[] = [];
  /** Per layer: transitions / weights, K and U (per-layer scope), mean distance to a transition point. */
  rate: BinnedRows | null = null;
  layerK: BinnedRows | null = null;
  layerU: BinnedRows | null = null;
  distMean: BinnedRows | null = null;
  /** Per distance bin: the fraction of all quantized weights in it. */
  distHist: BinnedRows | null = null;
  latestDist: { step: number; dist: TransitionDistance } | null = null;
  meta: RunMeta = { config: null, info: null, summary: null };
  activity: Activity | null = null;
  /** The pace of the recent steps, for the ETA (the CLI's window: eta.ts). */
  readonly eta = new EtaWindow();
  version = 0;
  private numels: number[] = [];

  constructor(readonly dir: string) {}

  get name(): string {
    return basename(this.dir);
  }

  get layers(): LayerInfo[] {
    return this.meta.info?.layers ?? [];
  }

  setMeta(meta: Partial<RunMeta>): void {
    this.meta = { ...this.meta, ...meta };
    this.numels = this.layers.map((layer) => layer.numel);
    this.version++;
  }

  setActivity(activity: Activity | null): void {
    this.activity = activity;
    this.version++;
  }

  add(record: MetricsRecord): void {
    if (record.type === 'step') this.addStep(record);
    else this.addEval(record);
    this.version++;
  }

  private addStep(record: StepRecord): void {
    const last = this.scalars.length > 0 ? this.scalars.column('step')[this.scalars.length - 1]! : -1;
    // A step at or before the last one: a resumed run replays from its checkpoint (as the log's truncation does).
    if (record.step <= last) this.scalars.truncate(this.scalars.lowerBound('step', record.step));
    this.scalars.push(record);
    this.eta.add(record.step, record.time);
    this.activity = null;
    const n = this.numels.length;
    if (record.counts && record.counts.length === n && n > 0) {
      this.rate ??= new BinnedRows(n);
      this.rate.add(record.step, record.counts.map((count, i) => count / this.numels[i]!));
    }
    if (record.K_layers && record.U_layers) {
      this.layerK ??= new BinnedRows(record.K_layers.length);
      this.layerU ??= new BinnedRows(record.U_layers.length);
      this.layerK.add(record.step, record.K_layers);
      this.layerU.add(record.step, record.U_layers);
    }
    if (record.dist) this.addDist(record.step, record.dist);
  }

  private addDist(step: number, dist: TransitionDistance): void {
    this.latestDist = { step, dist };
    this.distMean ??= new BinnedRows(dist.mean.length);
    this.distMean.add(step, dist.mean);
    const totals = new Array<number>(DISTANCE_BINS).fill(0);
    for (const row of dist.hist) row.forEach((count, bin) => (totals[bin]! += count));
    const weights = totals.reduce((a, b) => a + b, 0);
    this.distHist ??= new BinnedRows(DISTANCE_BINS);
    this.distHist.add(step, totals.map((count) => (weights > 0 ? count / weights : 0)));
  }

  private addEval(record: EvalRecord): void {
    while (this.evals.length > 0 && this.evals[this.evals.length - 1]!.step >= record.step) this.evals.pop();
    this.evals.push(record);
    this.activity = null;
  }

  /** The newest step record's scalars, or null before the first step. */
  latest(): Record<Scalar, number> | null {
    const i = this.scalars.length - 1;
    if (i < 0) return null;
    return Object.fromEntries(SCALARS.map((name) => [name, this.scalars.column(name)[i]!])) as Record<Scalar, number>;
  }
}
