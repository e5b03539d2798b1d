import { parseArgs } from 'node:util';
import { compareCsv, compareRow, compareTable, LATE_FRACTION } from '../dashboard/compare.js';
import { readRuns } from '../dashboard/reader.js';

const USAGE = `usage: trqat compare RUN_DIR... [--csv]
  One line per run: mode, status, steps, final and best top-1, tracking error mean|K - R|/R(0),
  late k (the mean measured transition rate over the last ${100 * LATE_FRACTION}% of the steps run:
  high when weights still oscillate) and time. --csv prints raw numbers as CSV.`;

/** `trqat compare RUN_DIR... [--csv]`. */
export async function compareCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { csv: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const rows = (await readRuns(positionals)).map((reader) => compareRow(reader.data));
  process.stdout.write(values.csv ? compareCsv(rows) : `${compareTable(rows)}\n`);
  return 0;
}
