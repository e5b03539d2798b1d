// A sweep against its runs started one by one (issue 21): `trqat sweep` of 8 tiny runs on synthetic
// data (2 settings of tr.lambda x 2 of tr.talr.eta x 2 seeds, 2 at once), then the same 8 runs with
// `trqat train --set ...`, one after the other. Reported per run: the final top-1 and loss of both,
// and whether every logged step (k, K, R, U, counts, loss) and evaluation is the same; the wall
// time of both ways.
//
// Usage: node scripts/bench/sweep.mjs [--tiny|--quick|--full] [options] (--help: the options)
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DIST, machineLine, outDir, parseArgs, pick, positiveInt, run, table, writeJson } from './lib.mjs';

const opts = parseArgs('sweep.mjs', 'A sweep of 8 tiny runs against the same runs started one by one: same results, and the wall time of both', (cli) =>
  cli.option('--steps <n>', 'steps per run (default by budget: 8, 24, 100)', positiveInt).option('--concurrency <n>', 'runs at once in the sweep (default 2)', positiveInt),
);
const steps = Number(opts.steps ?? pick(opts.budget, { tiny: 8, quick: 24, full: 100 }));
const concurrency = Number(opts.concurrency ?? 2);
const dir = outDir(opts, 'sweep');
const stamp = Date.now().toString(36);
const cli = join(DIST, 'cli.js');

const base = {
  name: 'bench',
  data: { name: 'synthetic', synthetic: { train_size: 256, test_size: 128 }, batch_size: 32, eval_batch_size: 128 },
  train: { steps, eval_every: Math.max(1, Math.floor(steps / 2)), log_every: steps },
  worker: { device: 'cpu', threads: 1 },
};
const basePath = join(dir, `base-${stamp}.json`);
writeJson(basePath, base);
const sweepPath = join(dir, `sweep-${stamp}.yaml`);
writeFileSync(
  sweepPath,
  [`base: ${basePath}`, 'grid:', '  tr.lambda: [0.01, 0.02]', '  tr.talr.eta: [0.5, 2]', 'seeds: 2', `concurrency: ${concurrency}`, 'gpus: none', `out: ${join(dir, `sweep-${stamp}`)}`, ''].join('\n'),
);

/** Every step's numbers and every evaluation of a run folder, as one comparable string; the last eval. */
function record(runDir) {
  const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  const numbers = lines.map((l) => (l.type === 'step' ? [l.step, l.k, l.K, l.R, l.U, l.counts, l.loss] : [l.step, l.top1, l.loss]));
  const last = lines.filter((l) => l.type === 'eval').at(-1);
  return { numbers: JSON.stringify(numbers), top1: last?.top1 ?? null, loss: last?.loss ?? null };
}
const folderOf = (runsDir, name) => join(runsDir, readdirSync(runsDir).find((folder) => folder.startsWith(`${name}-`)));

process.stderr.write(`sweep: ${sweepPath}\n`);
let started = Date.now();
await run('node', [cli, 'sweep', sweepPath], { echo: false });
const sweepSeconds = (Date.now() - started) / 1000;
const plan = (await run('node', [cli, 'sweep', sweepPath, '--plan'])).stdout
  .trim()
  .split('\n')
  .map((line) => {
    const [index, name, sets] = line.split('\t');
    return { index: Number(index), name, sets: sets.split(' ').filter((word) => word !== '--set') };
  });

const aloneRuns = join(dir, `alone-${stamp}`);
started = Date.now();
for (const entry of plan) {
  process.stderr.write(`one by one: ${entry.name}\n`);
  await run('node', [cli, 'train', basePath, '--set', `out_dir=${aloneRuns}`, '--set', `name=${entry.name}`, '--set', 'dashboard.enabled=false', ...entry.sets.flatMap((set) => ['--set', set])]);
}
const aloneSeconds = (Date.now() - started) / 1000;

const pct = (v) => (v === null ? '-' : `${v.toFixed(2)}%`);
const rows = plan.map((entry) => {
  const a = record(folderOf(join(dir, `sweep-${stamp}`, 'runs'), entry.name));
  const b = record(folderOf(aloneRuns, entry.name));
  return [entry.name, pct(a.top1), pct(b.top1), a.loss?.toFixed(4) ?? '-', b.loss?.toFixed(4) ?? '-', a.numbers === b.numbers ? 'yes' : 'NO'];
});
const same = rows.filter((row) => row[5] === 'yes').length;
writeJson(join(dir, `sweep-${stamp}.json`), { steps, concurrency, sweepSeconds, aloneSeconds, same, runs: rows.length });
console.log(
  table(`A sweep of ${rows.length} tiny runs (${concurrency} at once) against the same runs one by one`, ['run', 'top-1, sweep', 'top-1, alone', 'loss, sweep', 'loss, alone', 'every step and eval the same'], rows, [
    machineLine(),
    `${same} of ${rows.length} runs identical in every logged number; wall time: sweep ${sweepSeconds.toFixed(0)} s, one by one ${aloneSeconds.toFixed(0)} s (${(aloneSeconds / sweepSeconds).toFixed(2)}x).`,
    `ResNet-20 W2A2, synthetic 28x28 data (256 train, 128 test), batch 32, ${steps} steps per run, CPU, 1 thread per run.`,
  ]),
);
process.exitCode = same === rows.length ? 0 : 1;
