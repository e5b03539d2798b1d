// The page's shared state and small DOM helpers. Every page module is bundled into one inline
// script by html.ts (bundlePage): top-level names must be unique across the page's modules.
import type uPlot from 'uplot';
import type { HeatmapData } from '../series.js';
import type { ViewPayload } from '../view.js';

export const UPlot = (window as unknown as { uPlot: typeof uPlot }).uPlot;

/** One plotted series of a line chart: whose run, which metric (tests map chart data back to records by it). */
export interface PlottedSeries {
  run: number;
  metric: string;
  label: string;
}

/** What tests (and the curious, from the console) can read back: the charts' data and the heatmaps. */
export interface PageState {
  payload: ViewPayload | null;
  charts: Record<string, uPlot>;
  /** Per line chart, its series after x (in the order of the chart's data arrays). */
  plotted: Record<string, PlottedSeries[]>;
  /** heatmap.ts's heatmaps (described here, not imported: the page's modules import dom.ts, not each other in a cycle). */
  heatmaps: Record<string, { readonly data: HeatmapData; draw(): void }>;
  renders: number;
  /** How long the last render took (ms): the page's own cost of a payload. */
  renderMs: number;
  error: string | null;
  /** A payload with a running run came (a live run's page, not \`trqat view\` of finished runs). */
  sawLive: boolean;
  /** The page saw the run it watched end: it stopped polling and says how the run ended. */
  ended: boolean;
}
export const state: PageState = { payload: null, charts: {}, plotted: {}, heatmaps: {}, renders: 0, renderMs: 0, error: null, sawLive: false, ended: false };
(window as unknown as { trqat: PageState }).trqat = state;

/** The user's choices: zoom, log scales, smoothing, the layer of the layer chart. */
export const ui = {
  /** The zoomed step range, shared by every step chart and heatmap; null: the whole run. */
  zoom: null as { min: number; max: number } | null,
  logScale: {} as Record<string, boolean>,
  /** TensorBoard's smoothing weight, 0 (none) to 0.99. */
  smoothing: 0,
  layer: 0,
};

/** Callbacks one module gives another without importing it (a zoom asks the poller for detail). */
export const hooks = { refetch: (): void => undefined };

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];
export const CHART_HEIGHT = 240;

const params = new URLSearchParams(location.search);
/** The dashboard's token, from the printed URL: every request of the page carries it. */
export const token = params.get('token');
export const embedded = document.getElementById('trqat-data');
export const app = document.getElementById('app')!;
export const banner = document.getElementById('banner')!;

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The page's sections, top to bottom (each is made when it first has something to show). */
const SECTIONS = ['runs', 'tools', 'compare', 'tr', 'lr', 'loss', 'acc', 'top1', 'speed', 'layer', 'layers', 'distance', 'details'];

/** A section created once, by key, in its place among the others. */
export function section(key: string, title: string): HTMLElement {
  let node = document.getElementById(`section-${key}`);
  if (!node) {
    node = el('section', { id: `section-${key}` });
    node.append(el('h2', {}, title));
    const after = SECTIONS.slice(SECTIONS.indexOf(key) + 1)
      .map((k) => document.getElementById(`section-${k}`))
      .find((n) => n !== null);
    app.insertBefore(node, after ?? null);
  }
  return node;
}

export function table(headers: string[], rows: string[][], id: string): HTMLTableElement {
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

export function replace(parent: HTMLElement, id: string, node: HTMLElement): void {
  const old = document.getElementById(id);
  if (old) old.replaceWith(node);
  else parent.append(node);
}

export function color(run: number, alpha = 1): string {
  const hex = PALETTE[run % PALETTE.length]!;
  if (alpha >= 1) return hex;
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

export function chartWidth(): number {
  return Math.max(320, Math.min(app.clientWidth - 8, 1600));
}

/** The steps of every run shown (steps and evaluations), or null before the first. */
export function fullRange(): { min: number; max: number } | null {
  let min = Infinity;
  let max = -Infinity;
  for (const run of state.payload?.runs ?? []) {
    for (const steps of [run.series.step, run.evals.step]) {
      if (steps.length === 0) continue;
      min = Math.min(min, steps[0]!);
      max = Math.max(max, steps[steps.length - 1]!);
    }
  }
  return min <= max ? { min, max: Math.max(max, min + 1) } : null;
}
