import { duration } from '../format.js';
import type { RunData } from './run-data.js';

/** The late transition rate averages k over this last fraction of the steps run. */
export const LATE_FRACTION = 0.1;

/** One run in the comparison of `trqat compare`, the report and the dashboard. */
export interface CompareRow {
  run: string;
  dir: string;
  mode: string;
  status: string;
  /** Steps run, and the plan's length (null before the plan is known). */
  steps: number;
  total_steps: number | null;
  final_top1: number | null;
  best_top1: number | null;
  /** Mean |K - R| / R(0) after the settling window; null in baseline mode. */
  tracking_error: number | null;
  /** Mean measured k over the last 10% of the steps run: high when weights still oscillate. */
  late_k: number | null;
  time_s: number | null;
}

export function compareRow(run: RunData): CompareRow {
  const { config, info, summary } = run.meta;
  const steps = run.scalars.column('step');
  const last = run.evals[run.evals.length - 1];
  const time = run.scalars.column('time');
  return {
    run: run.name,
    dir: run.dir,
    mode: info?.mode === 'client' ? `${config?.mode ?? 'tr'} (client)` : (config?.mode ?? '-'),
    status: info?.status ?? (summary ? summary.status : 'unknown'),
    steps: steps.length > 0 ? steps[steps.length - 1]! + 1 : 0,
    total_steps: info?.plan?.total_steps ?? summary?.total_steps ?? null,
    final_top1: last?.top1 ?? summary?.final_top1 ?? null,
    best_top1: run.evals.length > 0 ? Math.max(...run.evals.map((e) => e.top1)) : (summary?.best_top1 ?? null),
    tracking_error: summary?.tracking_error ?? last?.tracking_error ?? null,
    late_k: lateRate(run),
    time_s: summary?.elapsed_s ?? (time.length > 1 ? time[time.length - 1]! - time[0]! : null),
  };
}

function lateRate(run: RunData): number | null {
  const k = run.scalars.column('k');
  const from = Math.floor(k.length * (1 - LATE_FRACTION));
  let sum = 0;
  let n = 0;
  for (let i = from; i < k.length; i++) {
    if (Number.isNaN(k[i]!)) continue;
    sum += k[i]!;
    n++;
  }
  return n > 0 ? sum / n : null;
}

export const COMPARE_HEADERS = ['run', 'mode', 'status', 'steps', 'final top-1', 'best top-1', 'tracking error', 'late k (last 10%)', 'time'];

/** The rows as text cells, for the terminal table and the page. */
export function compareCells(row: CompareRow): string[] {
  const percent = (v: number | null) => (v === null ? '-' : `${v.toFixed(2)}%`);
  return [
    row.run,
    row.mode,
    row.status,
    row.total_steps === null ? String(row.steps) : `${row.steps}/${row.total_steps}`,
    percent(row.final_top1),
    percent(row.best_top1),
    row.tracking_error === null ? '-' : row.tracking_error.toFixed(3),
    row.late_k === null ? '-' : row.late_k.toExponential(2),
    row.time_s === null ? '-' : duration(row.time_s),
  ];
}

/** An aligned plain-text table (no control characters, fine for logs). */
export function compareTable(rows: readonly CompareRow[]): string {
  const cells = [COMPARE_HEADERS, ...rows.map(compareCells)];
  const widths = COMPARE_HEADERS.map((_, c) => Math.max(...cells.map((row) => row[c]!.length)));
  const numeric = (c: number) => c >= 3;
  const line = (row: string[]) => row.map((cell, c) => (numeric(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd();
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** CSV with raw numbers (empty where unknown). */
export function compareCsv(rows: readonly CompareRow[]): string {
  const header = ['run', 'dir', 'mode', 'status', 'steps', 'total_steps', 'final_top1', 'best_top1', 'tracking_error', 'late_k', 'time_s'];
  const quote = (value: string) => (/[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value);
  const body = rows.map((row) => header.map((key) => quote(String(row[key as keyof CompareRow] ?? ''))).join(','));
  return `${[header.join(','), ...body].join('\n')}\n`;
}
