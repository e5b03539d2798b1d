// TensorBoard's smoothing, import-free: node tests call it, html.ts bundles it into the page.

/**
 * TensorBoard's debiased exponential moving average: weight 0 returns the values, 0.99 smooths
 * hard. Like TensorBoard, the first values are not pulled towards 0 (the sum is divided by the
 * weight the average has accumulated), missing values stay missing and are skipped, and a
 * constant series stays as it is.
 */
export function smoothEma(values: readonly (number | null)[], weight: number): (number | null)[] {
  if (!(weight > 0)) return [...values];
  const w = Math.min(weight, 0.999);
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (finite.every((v) => v === finite[0])) return [...values];
  let last = 0;
  let accumulated = 0;
  return values.map((v) => {
    if (v === null || !Number.isFinite(v)) return v;
    last = last * w + (1 - w) * v;
    accumulated++;
    return last / (1 - w ** accumulated);
  });
}
