// The per-layer heatmaps: a rows x steps matrix on a canvas, with row labels, a step axis, a colour
// bar and a hover readout.
import type { HeatmapData } from '../series.js';
import { niceTicks } from '../ticks.js';
import { chartWidth, el, fullRange, state, ui } from './dom.js';

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

export interface HeatmapSpec {
  title: string;
  rowLabels: string[];
  /** log: colours by log10 of the value (rates and LRs span decades; 0 gets the lowest colour). */
  log: boolean;
  unit: string;
}

/** A rows x steps matrix on a canvas, with row labels, a step axis, a colour bar and a hover readout. */
export class Heatmap {
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
    const xmin = ui.zoom?.min ?? full?.min ?? this.data.x[0] ?? 0;
    const xmax = ui.zoom?.max ?? (full ? full.max + 1 : this.data.end);
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
    for (const step of niceTicks(xmin, xmax, 5, true)) {
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

export function drawHeatmap(host: HTMLElement, id: string, spec: HeatmapSpec, data: HeatmapData | undefined): void {
  const existing = state.heatmaps[id] as Heatmap | undefined;
  if (!data || data.x.length === 0) return;
  if (existing) existing.update(spec, data);
  else state.heatmaps[id] = new Heatmap(host, id, spec, data);
}

