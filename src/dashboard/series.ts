/**
 * The in-memory shapes of a run's record that the dashboard draws from, sized for 600K steps and
 * 100+ layers: scalar metrics at full resolution in growable typed arrays, per-layer values in a
 * fixed number of step bins (merged pairwise as the run grows), and the server-side downsampling
 * that turns either into what a chart of a few thousand pixels needs.
 */

/** Numbers sent to the page keep this many significant digits (the charts cannot show more). */
const DIGITS = 5;

/** A value rounded for the page, or null for NaN (not recorded). */
export function rounded(value: number): number | null {
  return Number.isFinite(value) ? Number(value.toPrecision(DIGITS)) : null;
}

/** One number per step and metric, in arrays that double as they fill (8 bytes per value). */
export class Columns<Name extends string> {
  private data: Record<Name, Float64Array>;
  length = 0;

  constructor(readonly names: readonly Name[]) {
    this.data = Object.fromEntries(names.map((name) => [name, new Float64Array(1024)])) as Record<Name, Float64Array>;
  }

  /** Appends one row; missing or null values are stored as NaN. */
  push(row: Partial<Record<Name, number | null>>): void {
    if (this.length === this.data[this.names[0]!].length) {
      for (const name of this.names) {
        const grown = new Float64Array(this.length * 2);
        grown.set(this.data[name]);
        this.data[name] = grown;
      }
    }
    for (const name of this.names) this.data[name][this.length] = row[name] ?? Number.NaN;
    this.length++;
  }

  /** Drops every row from `length` on (a resumed run replays them). */
  truncate(length: number): void {
    this.length = Math.min(this.length, length);
  }

  column(name: Name): Float64Array {
    return this.data[name].subarray(0, this.length);
  }

  /** Index of the first row whose `key` column is >= value (the column must increase). */
  lowerBound(key: Name, value: number): number {
    const column = this.data[key];
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (column[mid]! < value) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Downsampled scalar series: one x array (steps) and one y array per metric, null where not recorded. */
export interface SeriesData {
  step: number[];
  values: Record<string, (number | null)[]>;
}

/**
 * Rows `[start, end)` of `columns` in at most `2 * buckets` points. Each bucket of consecutive rows
 * becomes two points, at its first and its last step, holding each metric's minimum and maximum in
 * the order they occurred: every spike stays visible, and a line through the points covers
 * exactly the range the raw data cover within each bucket.
 */
export function downsampleMinMax<Name extends string>(columns: Columns<Name>, x: Name, metrics: readonly Name[], start: number, end: number, buckets: number): SeriesData {
  const xs = columns.column(x);
  const out: SeriesData = { step: [], values: Object.fromEntries(metrics.map((m) => [m, []])) };
  const count = end - start;
  if (count <= 0) return out;
  if (count <= 2 * buckets) {
    for (let i = start; i < end; i++) out.step.push(xs[i]!);
    for (const m of metrics) {
      const ys = columns.column(m);
      const target = out.values[m]!;
      for (let i = start; i < end; i++) target.push(rounded(ys[i]!));
    }
    return out;
  }
  const bounds: number[] = [];
  for (let b = 0; b <= buckets; b++) bounds.push(start + Math.round((b * count) / buckets));
  for (let b = 0; b < buckets; b++) out.step.push(xs[bounds[b]!]!, xs[bounds[b + 1]! - 1]!);
  for (const m of metrics) {
    const ys = columns.column(m);
    const target = out.values[m]!;
    for (let b = 0; b < buckets; b++) {
      let min = Infinity;
      let max = -Infinity;
      let minAt = -1;
      let maxAt = -1;
      for (let i = bounds[b]!; i < bounds[b + 1]!; i++) {
        const y = ys[i]!;
        if (y < min) [min, minAt] = [y, i];
        if (y > max) [max, maxAt] = [y, i];
      }
      if (minAt < 0) target.push(null, null);
      else if (minAt <= maxAt) target.push(rounded(min), rounded(max));
      else target.push(rounded(max), rounded(min));
    }
  }
  return out;
}

/** A layers x steps (or bins x steps) matrix downsampled for a heatmap. */
export interface HeatmapData {
  /** First step of each column; a column reaches to the next column's step (the last to `end`). */
  x: number[];
  end: number;
  /** values[row][column], null where nothing was recorded. */
  values: (number | null)[][];
}

/**
 * Per-row values over steps, averaged in bins of `width` steps. There are at most `maxBins` bins:
 * when a step falls beyond them, neighbouring bins merge pairwise and the width doubles. Memory
 * stays rows x maxBins whatever the run length, and any view at maxBins / 2 columns or fewer is
 * exact (the mean of every value in its step range).
 */
export class BinnedRows {
  private width = 1;
  private sums: Float64Array;
  private counts: Uint32Array;
  private bins = 0;
  private lastStep = -1;

  constructor(
    readonly rows: number,
    readonly maxBins = 1024,
  ) {
    this.sums = new Float64Array(rows * maxBins);
    this.counts = new Uint32Array(maxBins);
  }

  /** Adds the values of one step (one per row). Steps are added in increasing order. */
  add(step: number, values: ArrayLike<number>): void {
    let bin = Math.floor(step / this.width);
    while (bin >= this.maxBins) {
      this.coarsen();
      bin = Math.floor(step / this.width);
    }
    const base = bin * this.rows;
    for (let r = 0; r < this.rows; r++) this.sums[base + r]! += values[r]!;
    this.counts[bin]!++;
    this.bins = Math.max(this.bins, bin + 1);
    this.lastStep = Math.max(this.lastStep, step);
  }

  get empty(): boolean {
    return this.lastStep < 0;
  }

  private coarsen(): void {
    const half = this.maxBins / 2;
    for (let b = 0; b < half; b++) {
      for (let r = 0; r < this.rows; r++) this.sums[b * this.rows + r] = this.sums[2 * b * this.rows + r]! + this.sums[(2 * b + 1) * this.rows + r]!;
      this.counts[b] = this.counts[2 * b]! + this.counts[2 * b + 1]!;
    }
    this.sums.fill(0, half * this.rows);
    this.counts.fill(0, half);
    this.width *= 2;
    this.bins = Math.ceil(this.bins / 2);
  }

  /** The bins overlapping steps [from, to], merged into at most `columns` columns; empty bins are left out. */
  view(from: number, to: number, columns: number): HeatmapData {
    const last = Math.min(this.bins, Math.floor(Math.min(to, this.lastStep) / this.width) + 1);
    const first = Math.max(0, Math.floor(Math.max(0, from) / this.width));
    const out: HeatmapData = { x: [], end: Math.min(to, this.lastStep) + 1, values: Array.from({ length: this.rows }, () => []) };
    if (this.empty || last <= first) return out;
    const merge = Math.max(1, Math.ceil((last - first) / Math.max(1, columns)));
    for (let b0 = first; b0 < last; b0 += merge) {
      let n = 0;
      for (let b = b0; b < Math.min(last, b0 + merge); b++) n += this.counts[b]!;
      if (n === 0) continue;
      out.x.push(b0 * this.width);
      for (let r = 0; r < this.rows; r++) {
        let sum = 0;
        for (let b = b0; b < Math.min(last, b0 + merge); b++) sum += this.sums[b * this.rows + r]!;
        out.values[r]!.push(rounded(sum / n));
      }
    }
    return out;
  }
}
