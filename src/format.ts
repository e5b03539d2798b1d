// Number and time formats shared by the CLI's lines and the dashboard (import-free: any layer may use them).

/** "evaluating: 12,500/50,000 (25%)"; without a total, the count alone. */
export function progressText(phase: string, done: number, total: number | null): string {
  const what = phase === 'eval' ? 'evaluating' : phase === 'data' ? 'loading data' : phase;
  const n = (value: number) => value.toLocaleString('en-US');
  if (total === null || total <= 0) return `${what}: ${n(done)}`;
  return `${what}: ${n(done)}/${n(total)} (${Math.floor((100 * Math.min(done, total)) / total)}%)`;
}

/** 1.23e-3; '-' for null. */
export function sci(value: number | null): string {
  if (value === null) return '-';
  return value === 0 ? '0' : value.toExponential(2);
}

export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
