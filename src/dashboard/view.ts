import { stringify as toYaml } from 'yaml';
import { DISTANCE_BIN_WIDTH, DISTANCE_BINS } from '../bridge/protocol.js';
import { duration, progressText, sci } from '../format.js';
import type { RunSummary } from '../run/record.js';
import { compareCells, compareRow, COMPARE_HEADERS, type CompareRow } from './compare.js';
import { SCALARS, type RunData, type Scalar } from './run-data.js';
import { downsampleMinMax, rounded, type HeatmapData, type SeriesData } from './series.js';

/**
 * What the page draws: every run's series downsampled on the server to about `points` buckets of
 * the step range [from, to], its evaluations, its per-layer heatmaps, and the facts and numbers
 * shown as text. The live page fetches it (server.ts); the report embeds it (report.ts).
 */
export interface ViewPayload {
  /** Changes whenever any run's record does (the page skips redrawing otherwise). */
  version: string;
  /** Whether a run may still change: the page keeps polling. */
  live: boolean;
  points: number;
  from: number | null;
  to: number | null;
  /** Labels of the distance bins, in quantization steps. */
  distBins: string[];
  compareHeaders: string[];
  runs: RunView[];
  /** What computing the heatmaps took here (ms; 0 when left out): a live page spaces its requests for them by it. */
  heatmapsMs: number;
}

export interface RunView {
  id: number;
  name: string;
  dir: string;
  status: string;
  mode: string;
  scope: string;
  /** [label, value] pairs about the run: model, bits, optimizer, device, plan. */
  facts: [string, string][];
  /** The newest step's numbers, raw (tests) and as printed. */
  latest: Partial<Record<Scalar | 'eta_s', number | null>> | null;
  latestText: [string, string][];
  /** A long phase in progress ("evaluating 1,250/10,000"), or null. */
  activity: string | null;
  layers: string[];
  series: SeriesData;
  evals: { step: number[]; top1: (number | null)[]; loss: (number | null)[]; tracking_error: (number | null)[] };
  /** Null when the request left them out (a live page asks for them every few seconds, not at every poll). */
  heatmaps: Partial<Record<'rate' | 'K' | 'U' | 'distMean' | 'distHist', HeatmapData>> | null;
  /** The newest distance measurement: the fraction of all quantized weights per bin, and the mean. */
  dist: { step: number; fractions: number[]; mean: number } | null;
  compare: CompareRow;
  compareText: string[];
  summary: RunSummary | null;
  /** config.json as YAML. */
  config: string | null;
}

export interface ViewRequest {
  /** Buckets of the scalar series (each gives 2 points); heatmaps get at most HEATMAP_COLUMNS columns. */
  points: number;
  from?: number | null;
  to?: number | null;
  /** Whether to compute the heatmaps (default true). */
  heatmaps?: boolean;
}

export const DEFAULT_POINTS = 1000;
const MAX_POINTS = 4000;
const HEATMAP_COLUMNS = 500;
const SERIES: readonly Scalar[] = SCALARS.filter((name) => name !== 'step' && name !== 'time');

export function viewPayload(runs: readonly RunData[], request: ViewRequest): ViewPayload {
  const points = Math.max(10, Math.min(MAX_POINTS, Math.round(request.points) || DEFAULT_POINTS));
  const from = request.from ?? null;
  const to = request.to ?? null;
  const cost = { heatmapsMs: 0 };
  return {
    version: runs.map((run) => run.version).join('.'),
    live: runs.some((run) => isRunning(run)),
    points,
    from,
    to,
    distBins: Array.from({ length: DISTANCE_BINS }, (_, i) =>
      i === DISTANCE_BINS - 1 ? `≥ ${(i * DISTANCE_BIN_WIDTH).toFixed(2)}` : `${(i * DISTANCE_BIN_WIDTH).toFixed(2)}–${((i + 1) * DISTANCE_BIN_WIDTH).toFixed(2)}`,
    ),
    compareHeaders: [...COMPARE_HEADERS],
    runs: runs.map((run, id) => runView(run, id, points, from ?? 0, to ?? Infinity, request.heatmaps ?? true, cost)),
    heatmapsMs: cost.heatmapsMs,
  };
}

function isRunning(run: RunData): boolean {
  return (run.meta.info?.status ?? 'running') === 'running';
}

function runView(run: RunData, id: number, points: number, from: number, to: number, heatmaps: boolean, cost: { heatmapsMs: number }): RunView {
  const { config, info, summary } = run.meta;
  const columns = Math.min(points, HEATMAP_COLUMNS);
  const start = run.scalars.lowerBound('step', from);
  const end = to === Infinity ? run.scalars.length : run.scalars.lowerBound('step', Math.floor(to) + 1);
  const heat = (rows: RunData['rate']) => {
    if (!rows || rows.empty) return undefined;
    const started = performance.now();
    const view = rows.view(from, to, columns);
    cost.heatmapsMs += performance.now() - started;
    return view;
  };
  const compare = compareRow(run);
  const latest = run.latest();
  const total = info?.plan?.total_steps ?? null;
  const eta = latest && total !== null && isRunning(run) ? run.eta.eta(total) : null;
  const evals = run.evals.filter((e) => e.step >= from && e.step <= to);
  return {
    id,
    name: run.name,
    dir: run.dir,
    status: info?.status ?? 'starting',
    mode: compare.mode,
    scope: config?.tr?.scope ?? 'network',
    facts: facts(run),
    latest: latest && { ...Object.fromEntries(SCALARS.map((name) => [name, finiteOrNull(latest[name])])), eta_s: eta },
    latestText: latest ? latestText(latest, total, eta) : [],
    activity: activityText(run),
    layers: run.layers.map((layer) => layer.name),
    series: downsampleMinMax(run.scalars, 'step', SERIES, start, end, points),
    evals: {
      step: evals.map((e) => e.step),
      top1: evals.map((e) => rounded(e.top1)),
      loss: evals.map((e) => rounded(e.loss)),
      tracking_error: evals.map((e) => (e.tracking_error === null ? null : rounded(e.tracking_error))),
    },
    heatmaps: heatmaps
      ? { rate: heat(run.rate), K: heat(run.layerK), U: heat(run.layerU), distMean: heat(run.distMean), distHist: heat(run.distHist) }
      : null,
    dist: latestDist(run),
    compare,
    compareText: compareCells(compare),
    summary,
    config: config ? toYaml(config) : null,
  };
}

function finiteOrNull(value: number | undefined): number | null {
  return value !== undefined && Number.isFinite(value) ? value : null;
}

function facts(run: RunData): [string, string][] {
  const { config, info } = run.meta;
  const out: [string, string][] = [];
  if (config) {
    out.push(['model', `${config.model?.factory ?? config.model?.name} W${config.quant?.weight_bits}A${config.quant?.act_bits}`]);
    out.push(['data', config.data?.factory ?? config.data?.name ?? '-']);
    out.push(['optimizer', `${config.optimizer?.name} lr ${config.optimizer?.lr}`]);
    if (config.mode === 'tr') out.push(['TR', `R(0) ${sci(config.tr.r0)}, ${config.tr.schedule?.name}, scope ${config.tr.scope}, ${config.tr.talr?.rule}`]);
  }
  if (info?.plan) out.push(['plan', `${info.plan.total_steps} steps, ${info.plan.steps_per_epoch} per epoch, m ${info.plan.controller?.momentum}, eta ${sci(info.plan.controller?.eta ?? null)}`]);
  if (info?.device) out.push(['device', info.device]);
  if (info?.layers) out.push(['quantized layers', `${info.layers.length} (${info.layers.reduce((a, l) => a + l.numel, 0).toLocaleString('en-US')} weights)`]);
  if (info?.error) out.push(['error', info.error]);
  return out;
}

function latestText(latest: Record<Scalar, number>, total: number | null, eta: number | null): [string, string][] {
  const number = (v: number) => (Number.isFinite(v) ? sci(v) : '-');
  const out: [string, string][] = [
    ['step', total === null ? String(latest.step + 1) : `${latest.step + 1}/${total}`],
    ['k', number(latest.k)],
    ['K', number(latest.K)],
  ];
  if (Number.isFinite(latest.R)) out.push(['R', number(latest.R)], ['U', number(latest.U)]);
  out.push(
    ['LR', number(latest.lr_other)],
    ['loss', Number.isFinite(latest.loss) ? latest.loss.toFixed(4) : '-'],
    ['acc', Number.isFinite(latest.acc) ? `${latest.acc.toFixed(1)}%` : '-'],
    ['step/s', latest.steps_per_s.toFixed(1)],
  );
  if (eta !== null) out.push(['ETA', duration(eta)]);
  return out;
}

function activityText(run: RunData): string | null {
  return run.activity && progressText(run.activity.phase, run.activity.done, run.activity.total);
}

function latestDist(run: RunData): RunView['dist'] {
  const latest = run.latestDist;
  if (!latest) return null;
  const totals = new Array<number>(DISTANCE_BINS).fill(0);
  for (const row of latest.dist.hist) row.forEach((count, bin) => (totals[bin]! += count));
  const weights = totals.reduce((a, b) => a + b, 0);
  const numels = latest.dist.hist.map((row) => row.reduce((a, b) => a + b, 0));
  const mean = latest.dist.mean.reduce((a, m, i) => a + m * numels[i]!, 0) / Math.max(1, weights);
  return { step: latest.step, fractions: totals.map((c) => rounded(weights > 0 ? c / weights : 0) ?? 0), mean: rounded(mean) ?? 0 };
}
