// The CSV download of what a chart plots: the step column and one column per plotted series.
import { state } from './dom.js';

/** The chart's data as CSV text (the values as drawn: smoothed when smoothing is on). */
export function chartCsv(key: string): string {
  const chart = state.charts[key];
  const plotted = state.plotted[key] ?? [];
  if (!chart) return '';
  const quote = (text: string) => (/[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text);
  const header = ['step', ...plotted.map((p) => p.label)].map(quote).join(',');
  const [x, ...ys] = chart.data;
  const lines = [header];
  for (let i = 0; i < (x?.length ?? 0); i++) {
    lines.push([x![i], ...ys.map((y) => y[i])].map((v) => (v === null || v === undefined ? '' : String(v))).join(','));
  }
  return `${lines.join('\n')}\n`;
}

/** Saves the chart's CSV as a file, `<key>.csv` (a blob URL: the page fetches nothing). */
export function downloadCsv(key: string): void {
  const url = URL.createObjectURL(new Blob([chartCsv(key)], { type: 'text/csv' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = `${key}.csv`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
