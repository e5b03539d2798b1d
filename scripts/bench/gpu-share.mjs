// Two GPU figures the step-time ratio of gpu.mjs does not give (scripts/gpu-check.sh runs it):
//   counting share   the plain QAT loop (plain_loop.py) with and without the worker's per-step transition
//                    counting (--count): (with - without) / with is what counting costs a step; on CUDA
//                    also with the counting's eager kernels (TRQAT_COUNT_GRAPH=0) instead of its CUDA graph
//   processes        N copies of the plain loop at once on the one GPU (N = 1, 4, 8): the sum of their
//                    steps/s against one alone, which says how many runs a sweep or study may share a GPU
// Both for ResNet-20 (CIFAR-sized, batch 128) and ResNet-18 (224x224, batch 256; counting only), W2A2, bf16 on
// CUDA, channels_last, synthetic data in memory. --tiny runs the same on the CPU at small sizes (the tests).
//
// Usage: node scripts/bench/gpu-share.mjs [--tiny|--quick|--full] [--md FILE] [--out DIR]
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { importDist, machineLine, mean, outDir, parseArgs, pick, runPythonJson, table, writeJson } from './lib.mjs';

const opts = parseArgs('gpu-share.mjs', 'Counting share of a GPU step, and N processes sharing one GPU', (cli) =>
  cli.option('--device <device>', 'cuda or cpu (default: cpu on tiny, else cuda)').option('--md <file>', 'rewrite this markdown file with the tables as they fill'),
);
const budget = opts.budget;
const device = opts.device ?? (budget === 'tiny' ? 'cpu' : 'cuda');
const dir = outDir(opts, 'gpu-share');
const { loadConfig } = await importDist();

const CASES = {
  resnet20: { model: 'resnet20', ...pick(budget, { tiny: { image: 16, batch: 8, steps: 8, warmup: 2, classes: 10 }, quick: { image: 32, batch: 128, steps: 300, warmup: 50, classes: 10 }, full: { image: 32, batch: 128, steps: 1000, warmup: 100, classes: 10 } }) },
  resnet18: { model: 'resnet18', ...pick(budget, { tiny: { image: 32, batch: 4, steps: 6, warmup: 2, classes: 10 }, quick: { image: 224, batch: 256, steps: 40, warmup: 10, classes: 1000 }, full: { image: 224, batch: 256, steps: 100, warmup: 20, classes: 1000 } }) },
};
const PROCS = pick(budget, { tiny: [1, 2], quick: [1, 4, 8], full: [1, 4, 8, 16] });
// with and without counting, alternating; tiny only proves the script works (one repetition)
const REPS = pick(budget, { tiny: 1, quick: 2, full: 2 });

function configFile(c) {
  const path = join(dir, `${c.model}.config.json`);
  const overrides = [
    `model.name=${c.model}`, 'mode=tr', 'data.name=synthetic', `data.synthetic.image_size=${c.image}`, 'data.synthetic.channels=3',
    `data.synthetic.num_classes=${c.classes}`, `data.synthetic.train_size=${c.batch * 4}`, `data.synthetic.test_size=${c.batch}`,
    `data.batch_size=${c.batch}`, 'data.augment=false', `worker.device=${device}`, `worker.amp=${device === 'cpu' ? 'off' : 'bf16'}`,
    'worker.channels_last=true', 'worker.threads=1',
  ];
  writeJson(path, loadConfig(null, overrides));
  return path;
}

/** Mean seconds per step of one plain_loop.py process, or of each of `n` at once. */
async function plain(c, path, { count = false, eager = false, n = 1 } = {}) {
  const args = [path, '--steps', String(c.steps), '--warmup', String(c.warmup), ...(count ? ['--count'] : [])];
  const env = eager ? { TRQAT_COUNT_GRAPH: '0' } : {};
  const results = await Promise.all(Array.from({ length: n }, () => runPythonJson('plain_loop.py', args, { env })));
  return results.map((r) => mean(r.step_s));
}

const rows = { count: [], procs: [] };
const render = () =>
  table(`Counting share of a step (${budget}, ${device})`, ['model', 'batch', 'ms/step without counting', 'ms/step with counting', 'counting share', 'ms/step, eager counting', 'its share'], rows.count, [
    machineLine(),
    `plain_loop.py with and without --count (TransitionCounter.update() before each step, which waits for the counts on the host: the worker instead overlaps that copy with the next forward pass); the share = (with − without) / with. "Eager counting": the same with TRQAT_COUNT_GRAPH=0, ~9 kernel launches per layer instead of one CUDA graph (torch >= 2.1 on CUDA; on a CPU both columns count eagerly). Rotating order, ${REPS} repetition(s), the mean.`,
  ]) +
  '\n' +
  table(`Processes sharing one GPU (${budget}, ${device})`, ['model', 'processes', 'steps/s each (mean)', 'steps/s in all', 'vs one process'], rows.procs, [
    'N copies of plain_loop.py started at once, each its own CUDA context (no MPS); steps/s from each process\'s steady state.',
  ]);
const flush = () => opts.md && writeFileSync(opts.md, render());

for (const name of ['resnet20', 'resnet18']) {
  const c = CASES[name];
  const path = configFile(c);
  const variants = [{ count: false }, { count: true }, { count: true, eager: true }];
  const times = variants.map(() => []);
  for (let r = 0; r < REPS; r++) {
    for (let i = 0; i < variants.length; i++) {
      const v = (i + r) % variants.length;  // rotating order
      times[v].push(...(await plain(c, path, variants[v])));
    }
  }
  const [a, b, e] = times.map(mean);
  const share = (x) => `${(((x - a) / x) * 100).toFixed(1)}%`;
  rows.count.push([name, c.batch, (a * 1000).toFixed(2), (b * 1000).toFixed(2), share(b), (e * 1000).toFixed(2), share(e)]);
  flush();
  if (name !== 'resnet20') continue;
  let one = null;
  for (const n of PROCS) {
    const each = (await plain(c, path, { n })).map((s) => 1 / s);
    const total = each.reduce((s, v) => s + v, 0);
    one ??= total;
    rows.procs.push([name, n, mean(each).toFixed(1), total.toFixed(1), `${(total / one).toFixed(2)}x`]);
    flush();
  }
}
console.log(render());
