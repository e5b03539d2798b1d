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

/** Rows per row bin start at 1 and double as the run grows; there are at most this many bins. */
const ROW_BINS = 8192;

/**
 * One number per step and metric, in arrays that double as they fill (8 bytes per value), and for
 * every metric the minimum and maximum over bins of consecutive rows (at most ROW_BINS of them,
 * merged pairwise as rows come), so that a view of the whole run reads bins instead of rows.
 */
export class Columns<Name extends string> {
  private data: Record<Name, Float64Array>;
  length = 0;
  /** Rows per bin. */
  private width = 1;

  get binWidth(): number {
    return this.width;
  }
  private readonly min: Record<Name, Float64Array>;
  private readonly max: Record<Name, Float64Array>;
  private readonly minAt: Record<Name, Int32Array>;
  private readonly maxAt: Record<Name, Int32Array>;

  constructor(readonly names: readonly Name[]) {
    const each = <T>(make: () => T) => Object.fromEntries(names.map((name) => [name, make()])) as Record<Name, T>;
    this.data = each(() => new Float64Array(1024));
    this.min = each(() => new Float64Array(ROW_BINS).fill(Infinity));
    this.max = each(() => new Float64Array(ROW_BINS).fill(-Infinity));
    this.minAt = each(() => new Int32Array(ROW_BINS).fill(-1));
    this.maxAt = each(() => new Int32Array(ROW_BINS).fill(-1));
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
    if (this.length >= ROW_BINS * this.width) this.coarsen();
    const bin = Math.floor(this.length / this.width);
    for (const name of this.names) {
      const value = row[name] ?? Number.NaN;
      this.data[name][this.length] = value;
      if (value < this.min[name][bin]!) {
        this.min[name][bin] = value;
        this.minAt[name][bin] = this.length;
      }
      if (value > this.max[name][bin]!) {
        this.max[name][bin] = value;
        this.maxAt[name][bin] = this.length;
      }
    }
    this.length++;
  }

  private coarsen(): void {
    const half = ROW_BINS / 2;
    for (const name of this.names) {
      const [min, max, minAt, maxAt] = [this.min[name], this.max[name], this.minAt[name], this.maxAt[name]];
      for (let b = 0; b < half; b++) {
        const [a, c] = [2 * b, 2 * b + 1];
        const lo = min[c]! < min[a]! ? c : a;
        const hi = max[c]! > max[a]! ? c : a;
        [min[b], minAt[b], max[b], maxAt[b]] = [min[lo]!, minAt[lo]!, max[hi]!, maxAt[hi]!];
      }
      min.fill(Infinity, half);
      max.fill(-Infinity, half);
      minAt.fill(-1, half);
      maxAt.fill(-1, half);
    }
    this.width *= 2;
  }

  /** Drops every row from `length` on (a resumed run replays them), and recomputes the bins. */
  truncate(length: number): void {
    if (length >= this.length) return;
    const rows = this.names.map((name) => this.data[name].slice(0, length));
    this.length = 0;
    this.width = 1;
    for (const name of this.names) {
      this.min[name].fill(Infinity);
      this.max[name].fill(-Infinity);
      this.minAt[name].fill(-1);
      this.maxAt[name].fill(-1);
    }
    for (let i = 0; i < length; i++) this.push(Object.fromEntries(this.names.map((name, n) => [name, rows[n]![i]!])) as Record<Name, number>);
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

  /** Minimum and maximum of `name` over rows [from, to), with where they are: from the bins where they fit whole. */
  extremes(name: Name, from: number, to: number): { min: number; minAt: number; max: number; maxAt: number } {
    const out = { min: Infinity, minAt: -1, max: -Infinity, maxAt: -1 };
    const ys = this.data[name];
    const scan = (a: number, b: number) => {
      for (let i = a; i < b; i++) {
        const y = ys[i]!;
        if (y < out.min) {
          out.min = y;
          out.minAt = i;
        }
        if (y > out.max) {
          out.max = y;
          out.maxAt = i;
        }
      }
    };
    const firstBin = Math.ceil(from / this.width);
    const endBin = Math.floor(to / this.width);
    if (endBin <= firstBin) {
      scan(from, to);
      return out;
    }
    scan(from, firstBin * this.width);
    const [min, max, minAt, maxAt] = [this.min[name], this.max[name], this.minAt[name], this.maxAt[name]];
    for (let b = firstBin; b < endBin; b++) {
      if (min[b]! < out.min) {
        out.min = min[b]!;
        out.minAt = minAt[b]!;
      }
      if (max[b]! > out.max) {
        out.max = max[b]!;
        out.maxAt = maxAt[b]!;
      }
    }
    scan(endBin * this.width, to);
    return out;
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
 * exactly the range the raw data cover within each bucket. A bucket reads the columns' row bins
 * that it holds whole, so the cost follows the number of buckets more than the number of rows.
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
  // Bucket bounds on bin bounds where buckets hold several bins: then a bucket reads bins only.
  const align = columns.binWidth > 1 && count >= 4 * buckets * columns.binWidth ? columns.binWidth : 1;
  const bounds = [start];
  for (let b = 1; b < buckets; b++) bounds.push(Math.round((start + (b * count) / buckets) / align) * align);
  bounds.push(end);
  for (let b = 0; b < buckets; b++) out.step.push(xs[bounds[b]!]!, xs[bounds[b + 1]! - 1]!);
  for (const m of metrics) {
    const target = out.values[m]!;
    for (let b = 0; b < buckets; b++) {
      const { min, minAt, max, maxAt } = columns.extremes(m, bounds[b]!, bounds[b + 1]!);
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
