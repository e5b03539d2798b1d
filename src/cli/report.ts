import { resolve } from 'node:path';
import { readRuns } from '../dashboard/reader.js';
import { REPORT_FILE, writeReport } from '../dashboard/report.js';

/**
 * `trqat report RUN_DIR... [-o FILE]`: one self-contained HTML file with the dashboard's plots of the
 * runs (overlaid), their config, summary and comparison table. Default output: RUN_DIR/report.html
 * for one run (as written at the end of every run), ./report.html for several.
 */
export async function reportCommand(runDirs: string[], options: { output?: string }): Promise<number> {
  const readers = await readRuns(runDirs);
  const path = resolve(options.output ?? (readers.length === 1 ? resolve(readers[0]!.data.dir, REPORT_FILE) : REPORT_FILE));
  writeReport(
    readers.map((reader) => reader.data),
    path,
  );
  console.log(`report ${path}`);
  return 0;
}
