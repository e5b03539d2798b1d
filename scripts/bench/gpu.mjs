// trqat against a plain PyTorch QAT loop on one GPU, side by side in one run (scripts/gpu-check.sh runs it):
//   resnet18   ImageNet-shaped synthetic data (224x224, 3 channels, 1000 classes), batch 256: images/s,
//              the step-time ratio trqat / plain (goal <= 1.02) and the peak GPU memory of each
//   resnet20   CIFAR-sized (32x32, 3 channels, 10 classes), batch 128, where the per-step exchange with
//              the controller is a large share of the step: steps/s and the ratio
// Both in bf16 (on CUDA) with channels_last, data in memory without augmentation. `plain` is plain_loop.py (the
// same model, quantizer, batches, optimizer and LR assignment, no counting, no bridge); `trqat` is
// trqat_run.mjs (the real controller driving the real worker). Step time = the span of the steady
// state (after warm-up) over its steps.
//
// Usage: node scripts/bench/gpu.mjs [--tiny|--quick|--full] [options] (--help: the options)
// --tiny runs on the CPU at small sizes (test/e2e/bench.test.ts: it proves the script works); quick and full
// are the GPU sizes. --md FILE is rewritten with the table after every repetition, so a run stopped at
// its time limit still leaves the repetitions it finished.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { importDist, machineLine, mean, medRange, outDir, parseArgs, pick, positiveInt, python, run, runNodeJson, runPythonJson, table, writeJson } from './lib.mjs';

const opts = parseArgs('gpu.mjs', 'trqat against a plain PyTorch QAT loop on one GPU: images/s, step-time ratio, peak GPU memory', (cli) =>
  cli
    .option('--only <models>', 'resnet18, resnet20 or both, comma-separated (default: resnet18,resnet20)')
    .option('--device <device>', 'cuda or cpu (default: cpu on tiny, else cuda)')
    .option('--reps <n>', 'repetitions (default by budget: 1, 3, 5)', positiveInt)
    .option('--steps <n>', 'steps per run (default: by model and budget)', positiveInt)
    .option('--md <file>', 'rewrite this markdown file with the table after every repetition')
    .option('--json <file>', 'also write the results as JSON'),
);
const budget = opts.budget;
const device = opts.device ?? (budget === 'tiny' ? 'cpu' : 'cuda');
const reps = Number(opts.reps ?? pick(budget, { tiny: 1, quick: 3, full: 5 }));
const dir = outDir(opts, 'gpu');
const amp = device === 'cpu' ? 'off' : 'bf16'; // mixed precision is for CUDA (the worker ignores it on the CPU, with a warning)

/** The GPU sizes; --tiny shrinks images, classes, batch and steps so that a CPU runs them in seconds. */
const CASES = {
  resnet18: {
    title: 'ResNet-18 on ImageNet-shaped synthetic data',
    model: 'resnet18',
    ...pick(budget, {
      tiny: { image: 32, classes: 10, batch: 4, steps: 6, warmup: 2 },
      quick: { image: 224, classes: 1000, batch: 256, steps: 40, warmup: 10 },
      full: { image: 224, classes: 1000, batch: 256, steps: 100, warmup: 20 },
    }),
    goal: '≤ 1.02',
  },
  resnet20: {
    title: 'ResNet-20, CIFAR-sized (the per-step exchange dominates)',
    model: 'resnet20',
    ...pick(budget, {
      tiny: { image: 32, classes: 10, batch: 16, steps: 8, warmup: 2 },
      quick: { image: 32, classes: 10, batch: 128, steps: 300, warmup: 50 },
      full: { image: 32, classes: 10, batch: 128, steps: 1000, warmup: 100 },
    }),
    goal: '-',
  },
};
const names = (opts.only ?? 'resnet18,resnet20').split(',');
for (const name of names) {
  if (!CASES[name]) {
    console.error(`gpu: --only takes ${Object.keys(CASES).join(', ')}; got ${name}`);
    process.exit(2);
  }
}

const { loadConfig } = await importDist();

function overrides(c) {
  return [
    `out_dir=${join(dir, 'runs')}`,
    `name=gpu-${c.model}`,
    `model.name=${c.model}`,
    'mode=tr',
    'data.name=synthetic',
    `data.synthetic.image_size=${c.image}`,
    'data.synthetic.channels=3',
    `data.synthetic.num_classes=${c.classes}`,
    `data.synthetic.train_size=${c.batch * 4}`,
    `data.synthetic.test_size=${c.batch}`,
    `data.batch_size=${c.batch}`,
    `data.eval_batch_size=${c.batch}`,
    'data.augment=false',
    `train.steps=${c.steps}`,
    'train.eval_every=0',
    'train.checkpoint_every=0',
    `worker.device=${device}`,
    `worker.amp=${amp}`,
    'worker.channels_last=true',
    ...(device === 'cpu' ? ['worker.threads=1'] : []),
  ];
}

/** torch, and the GPU's name when the device is CUDA. */
async function platform() {
  const code = `import json, torch; cuda = torch.cuda.is_available()
print(json.dumps({"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if cuda else None}))`;
  const { stdout } = await run(python(), ['-c', code]);
  return JSON.parse(stdout.trim().split('\n').pop());
}

const mib = (bytes) => (bytes == null ? 'n/a' : (bytes / 2 ** 20).toFixed(0));

function render(c, samples, info) {
  const ratio = samples.trqat.map((t, i) => t / samples.plain[i]).filter(Number.isFinite);
  const row = (label, kind, vsPlain, goal) => [
    label,
    medRange(samples[kind].map((t) => 1 / t), 1),
    medRange(samples[kind].map((t) => c.batch / t), 0),
    medRange(samples[kind], 1, 1000),
    vsPlain,
    goal,
    samples.peak[kind].length ? mib(Math.max(...samples.peak[kind])) : 'n/a',
  ];
  return table(
    `GPU: ${c.title} (${budget}, ${device})`,
    ['run', 'steps/s', 'images/s', 'ms/step', 'step time vs plain', 'goal', 'peak GPU memory MiB'],
    [row('plain PyTorch QAT loop', 'plain', '1', '-'), row('trqat', 'trqat', medRange(ratio, 3), c.goal)],
    [
      machineLine(),
      `device: ${info.gpu ?? device}; torch ${info.torch}.`,
      `${c.model} W2A2 (mode tr), synthetic ${c.image}x${c.image}x3 data in memory, ${c.classes} classes, no augmentation, batch ${c.batch}, SGD, amp ${amp}, channels_last; ${c.steps} steps per run, the first ${c.warmup} not timed.`,
      `Figures: median [min–max] over ${samples.plain.length} of ${reps} repetitions; each repetition runs plain and trqat back to back, in alternating order.`,
      'step time vs plain = trqat / plain; peak GPU memory = torch.cuda.max_memory_allocated, the largest over repetitions (trqat: the worker, at the end of its run).',
    ],
  );
}

const info = await platform();
const results = {};
let out = '';
for (const name of names) {
  const c = { ...CASES[name] };
  if (opts.steps) c.steps = Number(opts.steps);
  const configPath = join(dir, `${name}.config.json`);
  writeJson(configPath, loadConfig(null, overrides(c)));
  const samples = { plain: [], trqat: [], peak: { plain: [], trqat: [] } };
  const kinds = ['plain', 'trqat'];
  for (let r = 0; r < reps; r++) {
    for (const kind of kinds.map((_, i) => kinds[(i + r) % kinds.length])) {
      process.stderr.write(`gpu: ${name} rep ${r + 1}/${reps} ${kind}\n`);
      if (kind === 'plain') {
        const res = await runPythonJson('plain_loop.py', [configPath, '--steps', String(c.steps), '--warmup', String(c.warmup)]);
        samples.plain.push(mean(res.step_s));
        if (res.peak_gpu_bytes != null) samples.peak.plain.push(res.peak_gpu_bytes);
      } else {
        const res = await runNodeJson('trqat_run.mjs', ['--warmup', String(c.warmup), '--', ...overrides(c)]);
        rmSync(res.run_dir, { recursive: true, force: true });
        samples.trqat.push(res.mean_step_s);
        if (res.worker_peak_gpu_bytes != null) samples.peak.trqat.push(res.worker_peak_gpu_bytes);
      }
    }
    results[name] = { case: c, samples };
    if (opts.md) writeFileSync(opts.md, `${out}${render(c, samples, info)}`);
  }
  out += `${render(c, results[name].samples, info)}\n`;
}
console.log(out);
const result = { budget, device, reps, info, results, table: out };
if (opts.json) writeJson(opts.json, result);
writeJson(join(dir, `results-${budget}.json`), result);
