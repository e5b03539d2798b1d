// Runs every benchmark in turn and prints their tables (npm run bench).
// Usage: node scripts/bench/run-all.mjs [--tiny|--quick|--full] [--out DIR] (--help: the options)
//   tiny: seconds (what the test suite runs); quick (default): minutes on a laptop; full: longer, more repetitions and models.
// The reproduction study is separate: node scripts/bench/study.mjs --budget quick|full
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH_DIR, machineLine, outDir, parseArgs, run } from './lib.mjs';

const opts = parseArgs('run-all.mjs', 'Runs every benchmark in turn and prints their tables (npm run bench)');
const pass = [`--${opts.budget}`, ...(opts.out ? ['--out', opts.out] : [])];
const started = Date.now();
const parts = [];
for (const script of ['overhead.mjs', 'bridge.mjs', 'scaling.mjs', 'ddp.mjs', 'export.mjs', 'plugins.mjs', 'sweep.mjs']) {
  process.stderr.write(`run-all: ${script} (${opts.budget})\n`);
  const { stdout } = await run(process.execPath, [join(BENCH_DIR, script), ...pass], { echo: 'stderr' });
  process.stdout.write(`${stdout}\n`);
  parts.push(stdout);
}
const report = `# trqat benchmarks (${opts.budget})\n\n${machineLine()}\n\n${parts.join('\n')}`;
const path = join(outDir(opts, ''), `tables-${opts.budget}.md`);
writeFileSync(path, report);
process.stderr.write(`run-all: done in ${((Date.now() - started) / 1000).toFixed(0)} s; tables in ${path}\n`);
