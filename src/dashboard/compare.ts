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
  return alignedTable(COMPARE_HEADERS, rows.map(compareCells), 3);
}

/** Headers, then a rule, then the rows; columns from `numericFrom` on align right. */
function alignedTable(headers: readonly string[], rows: readonly string[][], numericFrom: number): string {
  const cells = [headers, ...rows];
  const widths = headers.map((_, c) => Math.max(...cells.map((row) => row[c]!.length)));
  const line = (row: readonly string[]) => row.map((cell, c) => (c >= numericFrom ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Mean and sample standard deviation (0 for one value) of the known values; null when none is known. */
export interface Stat {
  mean: number;
  std: number;
  n: number;
}

export function stat(values: ReadonlyArray<number | null>): Stat | null {
  const known = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (known.length === 0) return null;
  const mean = known.reduce((a, b) => a + b, 0) / known.length;
  const std = known.length > 1 ? Math.sqrt(known.reduce((a, v) => a + (v - mean) ** 2, 0) / (known.length - 1)) : 0;
  return { mean, std, n: known.length };
}

/** Runs of one setting (a sweep's seeds): mean +- std of the comparison's numbers. */
export interface CompareGroup {
  group: string;
  runs: number;
  completed: number;
  final_top1: Stat | null;
  best_top1: Stat | null;
  tracking_error: Stat | null;
  late_k: Stat | null;
  time_s: Stat | null;
}

/** The rows grouped by `groupOf`, groups in the order they first appear. */
export function compareGroups(rows: readonly CompareRow[], groupOf: (row: CompareRow) => string): CompareGroup[] {
  const groups = new Map<string, CompareRow[]>();
  for (const row of rows) groups.set(groupOf(row), [...(groups.get(groupOf(row)) ?? []), row]);
  return [...groups].map(([group, members]) => ({
    group,
    runs: members.length,
    completed: members.filter((row) => row.status === 'completed').length,
    final_top1: stat(members.map((row) => row.final_top1)),
    best_top1: stat(members.map((row) => row.best_top1)),
    tracking_error: stat(members.map((row) => row.tracking_error)),
    late_k: stat(members.map((row) => row.late_k)),
    time_s: stat(members.map((row) => row.time_s)),
  }));
}

export const GROUP_HEADERS = ['setting', 'runs', 'final top-1', 'best top-1', 'tracking error', 'late k (last 10%)', 'time'];

export function groupCells(group: CompareGroup): string[] {
  const pm = (s: Stat | null, text: (v: number) => string, unit = '') => (s === null ? '-' : `${text(s.mean)} ± ${text(s.std)}${unit}`);
  return [
    group.group,
    group.completed === group.runs ? String(group.runs) : `${group.completed}/${group.runs} done`,
    pm(group.final_top1, (v) => v.toFixed(2), '%'),
    pm(group.best_top1, (v) => v.toFixed(2), '%'),
    pm(group.tracking_error, (v) => v.toFixed(3)),
    pm(group.late_k, (v) => v.toExponential(2)),
    group.time_s === null ? '-' : duration(group.time_s.mean),
  ];
}

/** The groups as the same aligned table: one line per setting, mean ± std over its runs. */
export function groupTable(groups: readonly CompareGroup[]): string {
  return alignedTable(GROUP_HEADERS, groups.map(groupCells), 1);
}

/** CSV with raw numbers (empty where unknown). */
export function compareCsv(rows: readonly CompareRow[]): string {
  const header = ['run', 'dir', 'mode', 'status', 'steps', 'total_steps', 'final_top1', 'best_top1', 'tracking_error', 'late_k', 'time_s'];
  const quote = (value: string) => (/[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value);
  const body = rows.map((row) => header.map((key) => quote(String(row[key as keyof CompareRow] ?? ''))).join(','));
  return `${[header.join(','), ...body].join('\n')}\n`;
}
