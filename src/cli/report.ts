import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readRuns } from '../dashboard/reader.js';
import { REPORT_FILE, writeReport } from '../dashboard/report.js';

const USAGE = `usage: trqat report RUN_DIR... [-o report.html]
  Writes one self-contained HTML file with the dashboard's plots of the runs (overlaid), their
  config, summary and comparison table; it opens in a browser without network. Default output:
  RUN_DIR/report.html for one run (as written at the end of every run), ./report.html for several.`;

/** `trqat report RUN_DIR... [-o FILE]`. */
export async function reportCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { output: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const readers = await readRuns(positionals);
  const path = resolve(values.output ?? (readers.length === 1 ? resolve(readers[0]!.data.dir, REPORT_FILE) : REPORT_FILE));
  writeReport(
    readers.map((reader) => reader.data),
    path,
  );
  console.log(`report ${path}`);
  return 0;
}
