// The line charts (uPlot): one per LINE_CHARTS entry, every run's series overlaid, a shared zoom.
import type uPlot from 'uplot';
import { tickLabels } from '../ticks.js';
import type { RunView } from '../view.js';
import { downloadCsv } from './csv.js';
import { CHART_HEIGHT, chartWidth, color, el, fullRange, hooks, section, state, ui, UPlot, type PlottedSeries } from './dom.js';
import { smoothEma } from './smooth.js';

export interface SeriesSpec {
  metric: string;
  label: string;
  dash?: number[];
  width?: number;
  alpha?: number;
  /** The smoothing slider applies to it (noisy per-step measurements, not schedules). */
  smooth?: boolean;
}

export interface LineSpec {
  key: string;
  title: string;
  /** Which series of each run, with their look. */
  series: SeriesSpec[];
  /** Whether a log-scale toggle is offered (rates, LRs and losses span decades). */
  log?: boolean;
  /** Evaluations instead of step series. */
  evals?: boolean;
  /** A fixed outer range of the y axis (percentages stay within 0-100). */
  bounds?: [number, number];
}

export const LINE_CHARTS: LineSpec[] = [
  {
    key: 'tr',
    title: 'Transition rate: target R, running K, measured k',
    series: [
      { metric: 'R', label: 'R', dash: [6, 4], width: 2 },
      { metric: 'K', label: 'K', width: 2 },
      { metric: 'k', label: 'k', width: 1, alpha: 0.35, smooth: true },
    ],
    log: true,
  },
  {
    key: 'lr',
    title: 'Learning rates: U (TALR, quantized weights) and the ordinary LR',
    series: [
      { metric: 'U', label: 'U', width: 2 },
      { metric: 'lr_other', label: 'LR', dash: [6, 4], width: 1.5 },
    ],
    log: true,
  },
  { key: 'loss', title: 'Training loss', series: [{ metric: 'loss', label: 'loss', width: 1, smooth: true }], log: true },
  { key: 'acc', title: 'Batch accuracy (%)', series: [{ metric: 'acc', label: 'acc', width: 1, smooth: true }], bounds: [0, 100] },
  { key: 'top1', title: 'Evaluation top-1 (%)', series: [{ metric: 'top1', label: 'top-1', width: 2 }], evals: true, bounds: [0, 100] },
  { key: 'speed', title: 'Throughput (steps/s)', series: [{ metric: 'steps_per_s', label: 'steps/s', width: 1, smooth: true }] },
];

/** A series drawn over an identical one gets this dash, so both colours show. */
const DUPLICATE_DASH = [8, 8];
const DUPLICATE_DASH_ON_DASHED = [2, 6];

function runValues(spec: LineSpec, run: RunView, metric: string): (number | null)[] | undefined {
  return spec.evals ? (run.evals as unknown as Record<string, (number | null)[]>)[metric] : run.series.values[metric];
}

/** The chart's series: every run's series that holds a value (a baseline run has no R and no U). */
function plottedSeries(spec: LineSpec, runs: RunView[]): (PlottedSeries & { spec: SeriesSpec })[] {
  const many = runs.length > 1;
  return runs.flatMap((run, r) =>
    spec.series
      .filter((s) => (runValues(spec, run, s.metric) ?? []).some((v) => v !== null))
      .map((s) => ({ run: r, metric: s.metric, label: many ? `${run.name}: ${s.label}` : s.label, spec: s })),
  );
}

/** The chart's aligned data: one x array (steps) and one y array per plotted series, smoothed and cleaned for log scale as drawn. */
function lineData(spec: LineSpec, runs: RunView[], plotted: ReturnType<typeof plottedSeries>): uPlot.AlignedData {
  const log = ui.logScale[spec.key] === true;
  const tables: uPlot.AlignedData[] = runs.map((run, r) => {
    const x = spec.evals ? run.evals.step : run.series.step;
    const ys = plotted
      .filter((p) => p.run === r)
      .map((p) => {
        let values = runValues(spec, run, p.metric) ?? x.map(() => null);
        if (p.spec.smooth && ui.smoothing > 0) values = smoothEma(values, ui.smoothing);
        return log ? values.map((v) => (v !== null && v > 0 ? v : null)) : values;
      });
    return [x, ...ys] as uPlot.AlignedData;
  });
  if (tables.length === 1) return tables[0]!;
  return UPlot.join(tables);
}

/** Whether two series hold the same values wherever both have one (at least two such points). */
function identical(a: ArrayLike<number | null | undefined>, b: ArrayLike<number | null | undefined>): boolean {
  let shared = 0;
  for (let i = 0; i < a.length; i++) {
    const u = a[i];
    const v = b[i];
    if (u === null || u === undefined || v === null || v === undefined) continue;
    if (u !== v) return false;
    shared++;
  }
  return shared >= 2;
}

function lineOptions(spec: LineSpec, plotted: ReturnType<typeof plottedSeries>, data: uPlot.AlignedData, width: number): uPlot.Options {
  const series: uPlot.Series[] = [{ label: 'step' }];
  plotted.forEach((p, i) => {
    const duplicate = plotted.slice(0, i).some((_, j) => identical(data[j + 1]!, data[i + 1]!));
    const dash = duplicate ? (p.spec.dash ? DUPLICATE_DASH_ON_DASHED : DUPLICATE_DASH) : p.spec.dash;
    series.push({
      label: p.label,
      stroke: color(p.run, p.spec.alpha !== undefined && !(p.spec.smooth && ui.smoothing > 0) ? p.spec.alpha : 1),
      width: p.spec.width ?? 1,
      ...(dash ? { dash } : {}),
      spanGaps: true,
      points: { show: spec.evals === true },
      value: (_u, v) => (v === null || v === undefined ? '-' : Math.abs(v) < 1e-2 && v !== 0 ? v.toExponential(3) : v.toPrecision(5)),
    });
  });
  const log = ui.logScale[spec.key] === true;
  const bounds = spec.bounds;
  const y: uPlot.Scale = log ? { distr: 3 } : bounds ? { range: (_u, min, max) => boundedRange(min, max, bounds) } : {};
  return {
    width,
    height: CHART_HEIGHT,
    series,
    scales: { x: { time: false }, y },
    axes: [{ label: 'step' }, { label: '', size: 70, values: tickLabels }],
    // A drag selects a step range for every chart (applyZoom); a double click shows the whole run.
    cursor: { sync: { key: 'trqat-steps' }, drag: { x: true, y: false, setScale: false } },
    legend: { live: true },
    hooks: {
      setSelect: [
        (u) => {
          if (u.select.width < 3) return;
          const min = u.posToVal(u.select.left, 'x');
          const max = u.posToVal(u.select.left + u.select.width, 'x');
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          applyZoom({ min, max });
        },
      ],
      ready: [(u) => u.over.addEventListener('dblclick', () => applyZoom(null))],
    },
  };
}

/** The data's range with a margin, inside [low, high] (a top-1 axis never shows 110%). */
function boundedRange(min: number | null, max: number | null, [low, high]: [number, number]): uPlot.Range.MinMax {
  if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return [low, high];
  const pad = Math.max(1, 0.05 * (max - min));
  return [Math.max(low, Math.floor(min - pad)), Math.min(high, Math.ceil(max + pad))];
}

/** The chart's header controls: log scale (where offered) and the CSV download of what it plots. */
function controls(spec: LineSpec, host: HTMLElement): void {
  const h2 = host.querySelector('h2')!;
  if (spec.log && !host.querySelector('label.log')) {
    const label = el('label', { class: 'log' });
    const box = el('input', { type: 'checkbox', id: `log-${spec.key}` });
    box.addEventListener('change', () => {
      ui.logScale[spec.key] = box.checked;
      if (state.payload) drawLineChart(spec, state.payload.runs, true);
    });
    label.append(box, ' log scale');
    h2.append(label);
  }
  if (!host.querySelector('button.csv')) {
    const button = el('button', { class: 'csv', id: `csv-${spec.key}`, title: 'download the plotted data' }, 'CSV');
    button.addEventListener('click', () => downloadCsv(spec.key));
    h2.append(button);
  }
}

export function drawLineChart(spec: LineSpec, runs: RunView[], rebuild = false): void {
  const host = section(spec.key, spec.title);
  controls(spec, host);
  const plotted = plottedSeries(spec, runs);
  const data = lineData(spec, runs, plotted);
  const existing = state.charts[spec.key];
  const labels = plotted.map((p) => p.label).join('\n');
  const sameSeries = labels === (state.plotted[spec.key] ?? []).map((p) => p.label).join('\n');
  state.plotted[spec.key] = plotted.map(({ run, metric, label }) => ({ run, metric, label }));
  if (existing && !rebuild && sameSeries && existing.series.length === data.length) {
    existing.setData(data, false);
  } else {
    existing?.destroy();
    const holder = host.querySelector<HTMLElement>('.chart') ?? host.appendChild(el('div', { class: 'chart', id: `chart-${spec.key}` }));
    state.charts[spec.key] = new UPlot(lineOptions(spec, plotted, data, chartWidth()), data, holder);
  }
  // Every chart shows the same steps: the whole run (steps and evaluations), or the zoomed range.
  const range = ui.zoom ?? fullRange();
  if (range) state.charts[spec.key]!.setScale('x', range);
}

/** Redraws every line chart from the payload held (a setting changed). */
export function redrawLineCharts(): void {
  if (!state.payload) return;
  for (const spec of LINE_CHARTS) drawLineChart(spec, state.payload.runs, true);
}

/** The user zoomed (null: back to the whole run): every chart and heatmap follows, a live page fetches the range in detail. */
export function applyZoom(range: { min: number; max: number } | null): void {
  ui.zoom = range;
  const shown = range ?? fullRange();
  if (shown) for (const [key, chart] of Object.entries(state.charts)) if (key !== 'dist') chart.setScale('x', shown);
  for (const heatmap of Object.values(state.heatmaps)) heatmap.draw();
  hooks.refetch();
}
