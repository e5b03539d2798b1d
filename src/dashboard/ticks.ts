// Axis tick labels of the page's charts. A module without imports: node tests call it, and html.ts
// inlines it into the page ahead of page.js.

/** Values this small or this large are written in exponent notation (uPlot's default writes 1e-4 as "0"). */
const EXPONENT_BELOW = 1e-3;
const EXPONENT_FROM = 1e6;

/** One tick's label: 0.25, 0.001, 3e-5, 2.5e-4, 1e6; '' for a tick uPlot filtered out (null). */
export function tickLabel(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '';
  // 6 significant digits drop the float noise of computed splits (3 * 1e-5 = 3.0000000000000004e-5)
  const rounded = Number(value.toPrecision(6));
  const size = Math.abs(rounded);
  if (size !== 0 && (size < EXPONENT_BELOW || size >= EXPONENT_FROM)) return rounded.toExponential().replace('e+', 'e');
  return String(rounded);
}

/** uPlot's `axes[].values` for a numeric axis, linear or log. */
export function tickLabels(_self: unknown, splits: (number | null)[]): string[] {
  return splits.map(tickLabel);
}

/**
 * Round tick positions in [min, max]: multiples of 1, 2 or 5 times a power of ten, about `count`
 * of them (0, 50, 100, 150 rather than 0, 32, 64, 96). `integer`: no step below 1 (steps).
 */
export function niceTicks(min: number, max: number, count = 5, integer = false): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max) || !(max > min)) return Number.isFinite(min) ? [min] : [];
  const raw = (max - min) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const ratio = raw / magnitude;
  let step = (ratio < 1.5 ? 1 : ratio < 3 ? 2 : ratio < 7 ? 5 : 10) * magnitude;
  if (integer) step = Math.max(1, Math.round(step));
  const ticks: number[] = [];
  for (let i = Math.ceil(min / step); i * step <= max; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}
