// The dashboard page, in the browser: draws a ViewPayload (view.ts) with uPlot and canvas heatmaps.
// Live (served by server.ts): fetches /api/view and polls while a run goes on; a zoom fetches the
// zoomed range at full detail. Report (report.ts): the payload is embedded, nothing is fetched.
import type uPlot from 'uplot';
import type { HeatmapData } from './series.js';
import { tickLabels } from './ticks.js';
import type { RunView, ViewPayload } from './view.js';

const UPlot = (window as unknown as { uPlot: typeof uPlot }).uPlot;

/** What tests (and the curious, from the console) can read back: the charts' data and the heatmaps. */
interface PageState {
  payload: ViewPayload | null;
  charts: Record<string, uPlot>;
  heatmaps: Record<string, Heatmap>;
  renders: number;
  /** How long the last render took (ms): the page's own cost of a payload. */
  renderMs: number;
  error: string | null;
}
const state: PageState = { payload: null, charts: {}, heatmaps: {}, renders: 0, renderMs: 0, error: null };
(window as unknown as { trqat: PageState }).trqat = state;

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];
const CHART_HEIGHT = 240;
const POLL_MIN_MS = 1000;
const POLL_RETRY_MS = 5000;

const params = new URLSearchParams(location.search);
const token = params.get('token');
const embedded = document.getElementById('trqat-data');
const app = document.getElementById('app')!;
const banner = document.getElementById('banner')!;

// --- small DOM helpers -------------------------------------------------------------------------
function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The page's sections, top to bottom (each is made when it first has something to show). */
const SECTIONS = ['runs', 'compare', 'tr', 'lr', 'loss', 'acc', 'top1', 'speed', 'layers', 'distance', 'details'];

/** A section created once, by key, in its place among the others. */
function section(key: string, title: string): HTMLElement {
  let node = document.getElementById(`section-${key}`);
  if (!node) {
    node = el('section', { id: `section-${key}` });
    node.append(el('h2', {}, title));
    const after = SECTIONS.slice(SECTIONS.indexOf(key) + 1).map((k) => document.getElementById(`section-${k}`)).find((n) => n !== null);
    app.insertBefore(node, after ?? null);
  }
  return node;
}

function table(headers: string[], rows: string[][], id: string): HTMLTableElement {
  const t = el('table', { id });
  const head = el('tr');
  for (const h of headers) head.append(el('th', {}, h));
  t.append(head);
  for (const row of rows) {
    const tr = el('tr');
    for (const cell of row) tr.append(el('td', {}, cell));
    t.append(tr);
  }
  return t;
}

function replace(parent: HTMLElement, id: string, node: HTMLElement): void {
  const old = document.getElementById(id);
  if (old) old.replaceWith(node);
  else parent.append(node);
}

// --- line charts ------------------------------------------------------------------------------
interface LineSpec {
  key: string;
  title: string;
  /** Which series of each run, with their look. */
  series: { metric: string; label: string; dash?: number[]; width?: number; alpha?: number }[];
  /** Whether a log-scale toggle is offered (rates and LRs span decades). */
  log?: boolean;
  /** Evaluations instead of step series. */
  evals?: boolean;
  yLabel?: string;
}

const LINE_CHARTS: LineSpec[] = [
  {
    key: 'tr',
    title: 'Transition rate: target R, running K, measured k',
    series: [
      { metric: 'R', label: 'R', dash: [6, 4], width: 2 },
      { metric: 'K', label: 'K', width: 2 },
      { metric: 'k', label: 'k', width: 1, alpha: 0.35 },
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
  { key: 'loss', title: 'Training loss', series: [{ metric: 'loss', label: 'loss', width: 1 }] },
  { key: 'acc', title: 'Batch accuracy (%)', series: [{ metric: 'acc', label: 'acc', width: 1 }] },
  { key: 'top1', title: 'Evaluation top-1 (%)', series: [{ metric: 'top1', label: 'top-1', width: 2 }], evals: true },
  { key: 'speed', title: 'Throughput (steps/s)', series: [{ metric: 'steps_per_s', label: 'steps/s', width: 1 }] },
];

const logScale: Record<string, boolean> = {};
/** The zoomed step range, shared by every step chart and heatmap; null: the whole run. */
let zoom: { min: number; max: number } | null = null;

function color(run: number, alpha = 1): string {
  const hex = PALETTE[run % PALETTE.length]!;
  if (alpha >= 1) return hex;
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

/** The chart's aligned data: one x array (steps) and one y array per run and series. */
function lineData(spec: LineSpec, runs: RunView[]): uPlot.AlignedData {
  const log = logScale[spec.key] === true;
  const clean = (values: (number | null)[]) => (log ? values.map((v) => (v !== null && v > 0 ? v : null)) : values);
  const tables: uPlot.AlignedData[] = runs.map((run) => {
    const x = spec.evals ? run.evals.step : run.series.step;
    const ys = spec.series.map((s) => {
      const values = spec.evals ? (run.evals as unknown as Record<string, (number | null)[]>)[s.metric] : run.series.values[s.metric];
      return clean(values ?? x.map(() => null));
    });
    return [x, ...ys] as uPlot.AlignedData;
  });
  if (tables.length === 1) return tables[0]!;
  return UPlot.join(tables);
}

function lineOptions(spec: LineSpec, runs: RunView[], width: number): uPlot.Options {
  const many = runs.length > 1;
  const series: uPlot.Series[] = [{ label: 'step' }];
  runs.forEach((run, r) => {
    for (const s of spec.series) {
      series.push({
        label: many ? `${run.name}: ${s.label}` : s.label,
        stroke: color(r, s.alpha ?? 1),
        width: s.width ?? 1,
        ...(s.dash ? { dash: s.dash } : {}),
        spanGaps: true,
        points: { show: spec.evals === true },
        value: (_u, v) => (v === null || v === undefined ? '-' : Math.abs(v) < 1e-2 && v !== 0 ? v.toExponential(3) : v.toPrecision(5)),
      });
    }
  });
  const log = logScale[spec.key] === true;
  return {
    width,
    height: CHART_HEIGHT,
    series,
    scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
    axes: [{ label: 'step' }, { label: spec.yLabel ?? '', size: 70, values: tickLabels }],
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

function chartWidth(): number {
  return Math.max(320, Math.min(app.clientWidth - 8, 1600));
}

function drawLineChart(spec: LineSpec, runs: RunView[], rebuild = false): void {
  const host = section(spec.key, spec.title);
  if (spec.log && !host.querySelector('label.log')) {
    const label = el('label', { class: 'log' });
    const box = el('input', { type: 'checkbox', id: `log-${spec.key}` });
    box.addEventListener('change', () => {
      logScale[spec.key] = box.checked;
      if (state.payload) drawLineChart(spec, state.payload.runs, true);
    });
    label.append(box, ' log scale');
    host.querySelector('h2')!.append(label);
  }
  const data = lineData(spec, runs);
  const existing = state.charts[spec.key];
  const range = zoom ?? fullRange();
  if (existing && !rebuild && existing.series.length === data.length) {
    existing.setData(data, false);
  } else {
    existing?.destroy();
    const holder = host.querySelector<HTMLElement>('.chart') ?? host.appendChild(el('div', { class: 'chart', id: `chart-${spec.key}` }));
    state.charts[spec.key] = new UPlot(lineOptions(spec, runs, chartWidth()), data, holder);
  }
  // Every chart shows the same steps: the whole run (steps and evaluations), or the zoomed range.
  if (range) state.charts[spec.key]!.setScale('x', range);
}

/** The user zoomed (null: back to the whole run): every chart and heatmap follows, a live page fetches the range in detail. */
let zoomTimer: number | undefined;
function applyZoom(range: { min: number; max: number } | null): void {
  zoom = range;
  heat.stale = true;
  const shown = range ?? fullRange();
  if (shown) for (const [key, chart] of Object.entries(state.charts)) if (key !== 'dist') chart.setScale('x', shown);
  for (const heatmap of Object.values(state.heatmaps)) heatmap.draw();
  if (!embedded) {
    window.clearTimeout(zoomTimer);
    zoomTimer = window.setTimeout(() => void refresh(), 250);
  }
}

function fullRange(): { min: number; max: number } | null {
  const runs = state.payload?.runs ?? [];
  let min = Infinity;
  let max = -Infinity;
  for (const run of runs) {
    for (const steps of [run.series.step, run.evals.step]) {
      if (steps.length === 0) continue;
      min = Math.min(min, steps[0]!);
      max = Math.max(max, steps[steps.length - 1]!);
    }
  }
  return min <= max ? { min, max: Math.max(max, min + 1) } : null;
}

// --- heatmaps ---------------------------------------------------------------------------------
/** Viridis, sampled: value 0..1 -> colour. */
const VIRIDIS = ['#440154', '#482878', '#3e4989', '#31688e', '#26828e', '#1f9e89', '#35b779', '#6ece58', '#b5de2b', '#fde725'];
const RGB = VIRIDIS.map((hex) => [parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16)] as const);

function viridis(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, t)) * (RGB.length - 1);
  const i = Math.min(RGB.length - 2, Math.floor(x));
  const f = x - i;
  const a = RGB[i]!;
  const b = RGB[i + 1]!;
  return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
}

interface HeatmapSpec {
  title: string;
  rowLabels: string[];
  /** log: colours by log10 of the value (rates and LRs span decades; 0 gets the lowest colour). */
  log: boolean;
  unit: string;
}

/** A rows x steps matrix on a canvas, with row labels, a step axis, a colour bar and a hover readout. */
class Heatmap {
  data: HeatmapData;
  private readonly canvas: HTMLCanvasElement;
  private readonly readout: HTMLElement;
  private readonly scaleText: HTMLElement;
  /** The colour scale in force: [low, high] (log10 values when log). */
  range: [number, number] = [0, 1];

  constructor(
    host: HTMLElement,
    readonly id: string,
    public spec: HeatmapSpec,
    data: HeatmapData,
  ) {
    this.data = data;
    const box = el('div', { class: 'heatmap', id });
    box.append(el('h3', {}, spec.title));
    this.canvas = el('canvas');
    this.readout = el('div', { class: 'readout' }, 'hover for values');
    this.scaleText = el('div', { class: 'scale' });
    box.append(this.canvas, this.scaleText, this.readout);
    host.append(box);
    this.canvas.addEventListener('mousemove', (event) => this.hover(event));
    this.draw();
  }

  update(spec: HeatmapSpec, data: HeatmapData): void {
    this.spec = spec;
    this.data = data;
    this.draw();
  }

  private get rows(): number {
    return this.data.values.length;
  }

  private layout() {
    const width = chartWidth();
    const left = 150;
    const bottom = 22;
    const rowHeight = Math.max(2, Math.min(14, Math.floor(480 / Math.max(1, this.rows))));
    const height = rowHeight * this.rows + bottom;
    const full = fullRange();
    const xmin = zoom?.min ?? full?.min ?? this.data.x[0] ?? 0;
    const xmax = zoom?.max ?? (full ? full.max + 1 : this.data.end);
    return { width, height, left, bottom, rowHeight, xmin, xmax: Math.max(xmax, xmin + 1) };
  }

  /** The column that covers `step`, or -1. */
  columnAt(step: number): number {
    const x = this.data.x;
    let lo = 0;
    let hi = x.length - 1;
    if (hi < 0 || step < x[0]! || step >= this.data.end) return -1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (x[mid]! <= step) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The value drawn for `row` at `step` (null: nothing recorded). */
  valueAt(row: number, step: number): number | null {
    const c = this.columnAt(step);
    return c < 0 ? null : (this.data.values[row]?.[c] ?? null);
  }

  draw(): void {
    const { width, height, left, rowHeight, xmin, xmax } = this.layout();
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    const ctx = this.canvas.getContext('2d')!;
    ctx.scale(dpr, dpr);
    ctx.clearRect(0, 0, width, height);
    const plotWidth = width - left - 10;
    const px = (step: number) => left + ((step - xmin) / (xmax - xmin)) * plotWidth;
    const transform = (v: number) => (this.spec.log ? Math.log10(v) : v);
    let lo = Infinity;
    let hi = -Infinity;
    for (const row of this.data.values) {
      for (const v of row) {
        if (v === null || (this.spec.log && v <= 0)) continue;
        const t = transform(v);
        lo = Math.min(lo, t);
        hi = Math.max(hi, t);
      }
    }
    if (!(lo <= hi)) [lo, hi] = [0, 1];
    if (this.spec.log) lo = Math.max(lo, hi - 4); // four decades of colour
    if (hi === lo) hi = lo + 1;
    this.range = [lo, hi];
    // One pixel per cell in an offscreen image, each column then stretched to its steps.
    const { x, end, values } = this.data;
    const rows = values.length;
    const image = new ImageData(Math.max(1, x.length), Math.max(1, rows));
    for (let r = 0; r < rows; r++) {
      const row = values[r]!;
      for (let c = 0; c < x.length; c++) {
        const v = row[c];
        if (v === null || v === undefined) continue;
        const t = this.spec.log && v <= 0 ? 0 : (transform(v) - lo) / (hi - lo);
        const [red, green, blue] = viridis(t);
        const p = 4 * (r * x.length + c);
        image.data[p] = red;
        image.data[p + 1] = green;
        image.data[p + 2] = blue;
        image.data[p + 3] = 255;
      }
    }
    const cells = document.createElement('canvas');
    cells.width = image.width;
    cells.height = image.height;
    cells.getContext('2d')!.putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = false;
    for (let c = 0; c < x.length; c++) {
      const x0 = Math.max(left, px(x[c]!));
      const x1 = Math.min(left + plotWidth, px(c + 1 < x.length ? x[c + 1]! : end));
      if (x1 <= left || x0 >= left + plotWidth) continue;
      ctx.drawImage(cells, c, 0, 1, rows, x0, 0, Math.max(1, x1 - x0), rows * rowHeight);
    }
    // Row labels: as many as fit, evenly spaced.
    ctx.fillStyle = '#333';
    ctx.font = '11px sans-serif';
    ctx.textBaseline = 'middle';
    const every = Math.max(1, Math.ceil(12 / rowHeight));
    this.spec.rowLabels.forEach((label, r) => {
      if (r % every !== 0) return;
      ctx.fillText(label.length > 22 ? `…${label.slice(-21)}` : label, 2, r * rowHeight + rowHeight / 2, left - 6);
    });
    // Step axis.
    ctx.textBaseline = 'top';
    const top = this.rows * rowHeight + 4;
    for (let i = 0; i <= 5; i++) {
      const step = Math.round(xmin + ((xmax - xmin) * i) / 5);
      const xpx = px(step);
      ctx.fillRect(xpx, top - 4, 1, 4);
      ctx.fillText(String(step), Math.min(xpx, width - 40), top);
    }
    const show = (v: number) => (this.spec.log ? (10 ** v).toExponential(1) : v.toPrecision(3));
    this.scaleText.textContent = `colour: ${show(lo)} (dark) to ${show(hi)} (yellow)${this.spec.log ? ', log scale' : ''}${this.spec.unit ? `, ${this.spec.unit}` : ''}`;
  }

  private hover(event: MouseEvent): void {
    const { left, rowHeight, xmin, xmax, width } = this.layout();
    const rect = this.canvas.getBoundingClientRect();
    const xpx = event.clientX - rect.left;
    const row = Math.floor((event.clientY - rect.top) / rowHeight);
    if (xpx < left || row < 0 || row >= this.rows) return;
    const step = Math.floor(xmin + ((xpx - left) / (width - left - 10)) * (xmax - xmin));
    const c = this.columnAt(step);
    if (c < 0) return;
    const to = (c + 1 < this.data.x.length ? this.data.x[c + 1]! : this.data.end) - 1;
    const v = this.data.values[row]![c];
    this.readout.textContent = `${this.spec.rowLabels[row] ?? `row ${row}`}, steps ${this.data.x[c]}–${to}: ${v === null || v === undefined ? '-' : v.toPrecision(4)}`;
  }
}

function drawHeatmap(host: HTMLElement, id: string, spec: HeatmapSpec, data: HeatmapData | undefined): void {
  const existing = state.heatmaps[id];
  if (!data || data.x.length === 0) return;
  if (existing) existing.update(spec, data);
  else state.heatmaps[id] = new Heatmap(host, id, spec, data);
}

// --- the page ---------------------------------------------------------------------------------
function renderHeader(payload: ViewPayload): void {
  const host = section('runs', payload.runs.length > 1 ? 'Runs' : 'Run');
  payload.runs.forEach((run, r) => {
    const box = el('div', { class: 'run', id: `run-${r}` });
    const title = el('h3');
    title.append(el('span', { class: 'swatch', style: `background:${color(r)}` }), `${run.name} `, el('span', { class: `status ${run.status}` }, run.status));
    box.append(title);
    if (run.activity) box.append(el('div', { class: 'activity' }, run.activity));
    const latest = el('dl', { class: 'latest' });
    for (const [label, value] of run.latestText) {
      latest.append(el('dt', {}, label), el('dd', { 'data-metric': label }, value));
    }
    box.append(latest);
    const facts = el('dl', { class: 'facts' });
    for (const [label, value] of run.facts) facts.append(el('dt', {}, label), el('dd', {}, value));
    box.append(facts);
    replace(host, `run-${r}`, box);
  });
  const compare = section('compare', 'Comparison');
  replace(
    compare,
    'compare-table',
    table(
      payload.compareHeaders,
      payload.runs.map((run) => run.compareText),
      'compare-table',
    ),
  );
}

function renderLayers(payload: ViewPayload): void {
  const any = payload.runs.some((run) => run.heatmaps && [run.heatmaps.rate, run.heatmaps.K, run.heatmaps.U].some((h) => h && h.x.length > 0));
  if (!any && !document.getElementById('section-layers')) return;
  const host = section('layers', 'Per layer');
  payload.runs.forEach((run, r) => {
    if (!run.heatmaps) return; // not in this payload: the page keeps the last ones
    const prefix = payload.runs.length > 1 ? `${run.name}: ` : '';
    const layers = run.layers;
    drawHeatmap(host, `heat-rate-${r}`, { title: `${prefix}transition rate per layer (transitions / weights per step)`, rowLabels: layers, log: true, unit: 'per step' }, run.heatmaps.rate);
    drawHeatmap(host, `heat-K-${r}`, { title: `${prefix}K per layer (per-layer scope)`, rowLabels: layers, log: true, unit: '' }, run.heatmaps.K);
    drawHeatmap(host, `heat-U-${r}`, { title: `${prefix}U per layer (per-layer scope)`, rowLabels: layers, log: true, unit: '' }, run.heatmaps.U);
  });
}

function renderDistance(payload: ViewPayload): void {
  if (!payload.runs.some((run) => run.dist)) return;
  const host = section('distance', 'Distance of the weights to their nearest transition point (in quantization steps)');
  // The newest measurement of each run: the share of all quantized weights per distance bin.
  const bins = payload.distBins;
  const x = bins.map((_, i) => i);
  const withDist = payload.runs.filter((run) => run.dist);
  const data = [x, ...withDist.map((run) => run.dist!.fractions)] as uPlot.AlignedData;
  const chart = state.charts['dist'];
  if (chart && chart.series.length === data.length) chart.setData(data);
  else {
    chart?.destroy();
    const holder = host.querySelector<HTMLElement>('.chart') ?? host.appendChild(el('div', { class: 'chart', id: 'chart-dist' }));
    state.charts['dist'] = new UPlot(
      {
        width: chartWidth(),
        height: CHART_HEIGHT,
        // Shares start at 0: bars from the axis would exaggerate small differences otherwise.
        scales: { x: { time: false, range: [-0.5, bins.length - 0.5] }, y: { range: (_u, _min, max) => [0, Math.max(max, 1e-9) * 1.05] } },
        series: [
          { label: 'distance', value: (_u, v) => bins[v] ?? '-' },
          ...withDist.map((run) => ({
            label: `${withDist.length > 1 ? `${run.name}: ` : ''}share of weights`,
            stroke: color(payload.runs.indexOf(run)),
            fill: color(payload.runs.indexOf(run), 0.15),
            width: 1.5,
            paths: UPlot.paths.bars!({ size: [0.7, Infinity] }),
            points: { show: false },
          })),
        ],
        axes: [{ label: 'distance to the nearest transition point (quantization steps)', values: (_u, splits) => splits.map((i) => bins[i] ?? '') }, { size: 60 }],
        cursor: { drag: { x: false, y: false } },
      },
      data,
      holder,
    );
  }
  const means = el('p', { id: 'dist-means' }, withDist.map((run) => `${run.name}: measured at step ${run.dist!.step}, mean distance ${run.dist!.mean}`).join('; '));
  replace(host, 'dist-means', means);
  payload.runs.forEach((run, r) => {
    if (!run.heatmaps) return;
    const prefix = payload.runs.length > 1 ? `${run.name}: ` : '';
    drawHeatmap(host, `heat-distHist-${r}`, { title: `${prefix}share of weights per distance bin over the run`, rowLabels: bins, log: false, unit: 'share of weights' }, run.heatmaps.distHist);
    drawHeatmap(host, `heat-distMean-${r}`, { title: `${prefix}mean distance per layer`, rowLabels: run.layers, log: false, unit: 'quantization steps' }, run.heatmaps.distMean);
  });
}

function renderDetails(payload: ViewPayload): void {
  const host = section('details', 'Summary and config');
  payload.runs.forEach((run, r) => {
    const details = el('details', { id: `details-${r}` });
    details.append(el('summary', {}, `${run.name}: summary.json and config`));
    if (run.summary) details.append(el('pre', { class: 'summary' }, JSON.stringify(run.summary, null, 2)));
    if (run.config) details.append(el('pre', { class: 'config' }, run.config));
    const open = document.getElementById(`details-${r}`) as HTMLDetailsElement | null;
    if (open?.open) details.open = true;
    replace(host, `details-${r}`, details);
  });
}

function render(payload: ViewPayload): void {
  const started = performance.now();
  state.payload = payload;
  if (payload.runs.every((run) => run.series.step.length === 0 && run.evals.step.length === 0)) {
    banner.textContent = payload.runs.some((run) => run.activity) ? payload.runs.map((run) => run.activity).filter(Boolean).join('; ') : 'waiting for the first step…';
    banner.hidden = false;
  } else if (banner.dataset['kind'] !== 'error') {
    banner.hidden = true;
  }
  renderHeader(payload);
  for (const spec of LINE_CHARTS) drawLineChart(spec, payload.runs);
  renderLayers(payload);
  renderDistance(payload);
  renderDetails(payload);
  state.renders++;
  state.renderMs = performance.now() - started;
  document.body.dataset['renders'] = String(state.renders);
}

// --- fetching ---------------------------------------------------------------------------------
/**
 * Heatmaps cost the server more than the series (every layer's bins), and a live run's server is
 * its controller: a live page asks for them when it first loads, after a zoom, and then at most
 * every 50 times what the server said they took (at every poll for a short run; every few seconds
 * for a 600K-step run of 100+ layers), so they take at most ~2% of the controller's time.
 */
const heat = { at: -Infinity, tookMs: 0, stale: true };
function heatmapsDue(): boolean {
  return heat.stale || performance.now() - heat.at >= Math.max(POLL_MIN_MS, 50 * heat.tookMs);
}

function requestUrl(since: string | null, withHeatmaps: boolean): string {
  const query = new URLSearchParams({ points: String(chartWidth()) });
  if (!withHeatmaps) query.set('heatmaps', '0');
  if (zoom) {
    query.set('from', String(Math.floor(zoom.min)));
    query.set('to', String(Math.ceil(zoom.max)));
  }
  if (since !== null) query.set('since', since);
  if (token) query.set('token', token);
  return `api/view?${query}`;
}

let requested: string | null = null;
async function refresh(): Promise<boolean> {
  const withHeatmaps = heatmapsDue();
  const url = requestUrl(null, withHeatmaps);
  const since = url === requested ? (state.payload?.version ?? null) : null;
  const response = await fetch(requestUrl(since, withHeatmaps), { cache: 'no-store' });
  if (response.status === 204) return true;
  if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
  requested = url;
  const payload = (await response.json()) as ViewPayload;
  if (withHeatmaps) Object.assign(heat, { at: performance.now(), tookMs: payload.heatmapsMs, stale: false });
  render(payload);
  return true;
}

async function poll(): Promise<void> {
  const started = performance.now();
  let delay = POLL_MIN_MS;
  try {
    await refresh();
    banner.dataset['kind'] = '';
    state.error = null;
    delay = Math.max(POLL_MIN_MS, 4 * (performance.now() - started));
  } catch (error) {
    state.error = String(error);
    banner.dataset['kind'] = 'error';
    banner.textContent = 'The dashboard is not answering: the run has ended (its report.html is in the run folder) or the controller stopped.';
    banner.hidden = false;
    delay = POLL_RETRY_MS;
  }
  if (state.payload === null || state.payload.live || state.error) window.setTimeout(() => void poll(), delay);
}

window.addEventListener('resize', () => {
  for (const chart of Object.values(state.charts)) chart.setSize({ width: chartWidth(), height: CHART_HEIGHT });
  for (const heatmap of Object.values(state.heatmaps)) heatmap.draw();
});

if (embedded) render(JSON.parse(embedded.textContent ?? '{}') as ViewPayload);
else void poll();
