import { writeFileAtomic } from '../files.js';
import { pageHtml } from './html.js';
import type { RunData } from './run-data.js';
import { viewPayload } from './view.js';

/** Scalar buckets embedded in a report: ~4000 points per series, sharp on any screen. */
const REPORT_POINTS = 2000;

/** The report's file name in a run folder (written when the run ends). */
export const REPORT_FILE = 'report.html';

/** One self-contained HTML file: the dashboard's page with the runs' data embedded; it opens without network. */
export function reportHtml(runs: readonly RunData[]): string {
  const payload = { ...viewPayload(runs, { points: REPORT_POINTS }), live: false };
  return pageHtml({ title: `report: ${runs.map((run) => run.name).join(', ')}`, payload });
}

export function writeReport(runs: readonly RunData[], path: string): void {
  writeFileAtomic(path, reportHtml(runs));
}
