// Data-parallel training on the CPU (torch.distributed, gloo), side by side in one run:
//   trqat x1   train() with one worker rank
//   trqat x2   train() with worker.nproc_per_node=2 (the same global batch, half per rank)
//   plain x2   plain_loop.py on two processes: a plain DistributedDataParallel QAT loop with the
//              same model, batches, optimizer and LR assignment, no counting, no bridge
// Reported: steps/s and images/s, the scaling efficiency of trqat from 1 to 2 ranks, and the overhead
// of trqat x2 against plain x2 (goal <= 1.03).
//
// Usage: node scripts/bench/ddp.mjs [--tiny|--quick|--full] [options] (--help: the options)
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { importDist, loadNote, machineLine, mean, medRange, outDir, parseArgs, pick, positiveInt, runNodeJson, runPythonJson, table, waitQuiet, writeJson } from './lib.mjs';

const opts = parseArgs('ddp.mjs', 'Data-parallel training on the CPU: trqat with 1 and 2 ranks against a plain DDP loop', (cli) =>
  cli
    .option('--reps <n>', 'repetitions (default by budget: 1, 3, 5)', positiveInt)
    .option('--steps <n>', 'steps per run (default by budget: 8, 40, 120)', positiveInt)
    .option('--json <file>', 'also write the results as JSON'),
);
const budget = opts.budget;
const size = {
  tiny: { batch: 16, steps: 8, warmup: 2 },
  quick: { batch: 128, steps: 40, warmup: 5 },
  full: { batch: 128, steps: 120, warmup: 10 },
}[budget];
if (opts.steps) size.steps = Number(opts.steps);
const reps = Number(opts.reps ?? pick(budget, { tiny: 1, quick: 3, full: 5 }));
const dir = outDir(opts, 'ddp');

const { loadConfig } = await importDist();
const { freePort, rankEnv } = await importDist('bridge/launcher.js');

/** One thread per rank: two ranks on two cores, and the single rank on one core too, so per-core work is compared. */
const overrides = (ranks) => [
  `out_dir=${join(dir, 'runs')}`,
  `name=ddp-${ranks}`,
  'model.name=resnet20',
  'data.name=synthetic',
  `data.synthetic.train_size=${size.batch * 8}`,
  'data.synthetic.test_size=32',
  'data.eval_batch_size=32',
  `data.batch_size=${size.batch}`,
  'data.augment=false',
  `train.steps=${size.steps}`,
  'train.eval_every=0',
  'train.checkpoint_every=0',
  'worker.device=cpu',
  'worker.threads=1',
  `worker.nproc_per_node=${ranks}`,
];

async function plainDdp(configPath) {
  const port = await freePort();
  const args = [configPath, '--steps', String(size.steps), '--warmup', String(size.warmup)];
  const [zero] = await Promise.all([0, 1].map((rank) => runPythonJson('plain_loop.py', args, { env: rankEnv(rank, 2, port) })));
  return zero;
}

const configPath = join(dir, 'plain.config.json');
writeJson(configPath, loadConfig(null, overrides(1)));
const samples = { trqat1: [], trqat2: [], plain2: [] };
const kinds = Object.keys(samples);
for (let r = 0; r < reps; r++) {
  await waitQuiet(budget === 'tiny' ? { maxWaitS: 0 } : {});
  for (const kind of kinds.map((_, i) => kinds[(i + r) % kinds.length])) {
    process.stderr.write(`ddp: rep ${r + 1}/${reps} ${kind}\n`);
    if (kind === 'plain2') {
      samples.plain2.push(mean((await plainDdp(configPath)).step_s));
    } else {
      const res = await runNodeJson('trqat_run.mjs', ['--warmup', String(size.warmup), '--', ...overrides(kind === 'trqat1' ? 1 : 2)]);
      rmSync(res.run_dir, { recursive: true, force: true });
      samples[kind].push(res.mean_step_s);
    }
  }
}

const stepsPerS = (s) => s.map((t) => 1 / t);
const imagesPerS = (s) => s.map((t) => size.batch / t);
const efficiency = samples.trqat2.map((t2, i) => samples.trqat1[i] / t2 / 2);
const overhead = samples.trqat2.map((t2, i) => t2 / samples.plain2[i]);
const result = { size, reps, samples, efficiency, overhead };
if (opts.json) writeJson(opts.json, result);
writeJson(join(dir, 'ddp.json'), result);

console.log(
  table(
    'Data parallelism on the CPU: 1 vs 2 gloo ranks, and trqat against a plain DDP loop',
    ['run', 'steps/s', 'images/s', 'scaling efficiency', 'step time vs plain DDP x2'],
    [
      ['trqat, 1 rank', medRange(stepsPerS(samples.trqat1), 2), medRange(imagesPerS(samples.trqat1), 0), '-', '-'],
      ['trqat, 2 ranks', medRange(stepsPerS(samples.trqat2), 2), medRange(imagesPerS(samples.trqat2), 0), medRange(efficiency, 2), medRange(overhead, 3)],
      ['plain DDP loop, 2 ranks', medRange(stepsPerS(samples.plain2), 2), medRange(imagesPerS(samples.plain2), 0), '-', '1'],
    ],
    [
      machineLine(),
      loadNote(),
      `ResNet-20 W2A2 on synthetic 28x28 data in memory, global batch ${size.batch} (half per rank with 2 ranks), SGD, CPU, 1 thread per rank; ${size.steps} steps per run, the first ${size.warmup} not timed.`,
      'Figures: median [min–max] over repetitions; each repetition runs the three variants back to back in rotating order.',
      'scaling efficiency = images/s with 2 ranks / (2 x images/s with 1 rank); step time vs plain = trqat x2 / plain DDP x2 (goal <= 1.03).',
    ],
  ),
);
