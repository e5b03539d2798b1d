import { compareCsv, compareRow, compareTable } from '../dashboard/compare.js';
import { readRuns } from '../dashboard/reader.js';

/** `trqat compare RUN_DIR... [--csv]`: one line per run, or raw numbers as CSV. */
export async function compareCommand(runDirs: string[], options: { csv?: boolean }): Promise<number> {
  const rows = (await readRuns(runDirs)).map((reader) => compareRow(reader.data));
  process.stdout.write(options.csv ? compareCsv(rows) : `${compareTable(rows)}\n`);
  return 0;
}
