// Benchmarks 1 and 3: step-time overhead of trqat's TR-scheduled training against a plain PyTorch
// QAT loop, and the memory it costs. Measured side by side in one run, interleaved.
//
// Per model and repetition, four runs in rotating order:
//   trqat   the real thing: a Node process running train() (controller + ZeroMQ + the real worker)
//   plain   plain_loop.py: the same model, quantizer, batches, optimizer and LR assignment, no
//           counting, no bridge
//   +count  plain_loop.py --count: the plain loop plus the worker's TransitionCounter.update()
//   client  `trqat run -- python plain_loop.py --client`: the plain loop as a user's script, with
//           trqat.client.Client counting, reporting and setting the LRs (timed by the loop itself)
// Step time = mean over the steady-state steps (after warm-up) of each run.
//
// Usage: node scripts/bench/overhead.mjs [--tiny|--quick|--full] [options] (--help: the options)
import { rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import {
  availableModels,
  BENCH_DIR,
  DIST,
  python,
  run,
  loadNote,
  waitQuiet,
  importDist,
  machineLine,
  mean,
  median,
  medRange,
  outDir,
  parseArgs,
  pick,
  positiveInt,
  runNodeJson,
  runPythonJson,
  table,
  writeJson,
} from './lib.mjs';

const opts = parseArgs('overhead.mjs', "Step-time overhead of trqat's TR-scheduled training against a plain PyTorch QAT loop, and its memory", (cli) =>
  cli
    .option('--models <list>', 'models, comma-separated (default: resnet20 on tiny, else resnet20,resnet18)')
    .option('--reps <n>', 'repetitions (default by budget: 1, 3, 5)', positiveInt)
    .option('--steps <n>', 'steps per run (default: by model and budget)', positiveInt)
    .option('--threads <n>', 'CPU threads (default: 1 on tiny or on 2 cores, else every core)', positiveInt)
    .option('--json <file>', 'also write the results as JSON'),
);
const budget = opts.budget;
/** Per model: batch, steps per run, warm-up steps; the batch is fixed per model so one step is affordable on a CPU. */
const SIZES = {
  tiny: { resnet20: { batch: 16, steps: 8, warmup: 2 }, default: { batch: 4, steps: 6, warmup: 2 } },
  quick: { resnet20: { batch: 128, steps: 40, warmup: 5 }, default: { batch: 32, steps: 16, warmup: 4 } },
  full: { resnet20: { batch: 128, steps: 120, warmup: 10 }, default: { batch: 64, steps: 40, warmup: 5 } },
};
const reps = Number(opts.reps ?? pick(budget, { tiny: 1, quick: 3, full: 5 }));
const wanted = (opts.models ?? pick(budget, { tiny: 'resnet20', quick: 'resnet20,resnet18', full: 'resnet20,resnet18' })).split(',');
// One thread on small machines and in tiny runs (beside other tests): with all cores in use, any other
// process makes every OpenMP region wait for a descheduled thread, and step times jump 10-100x.
const threads = Number(opts.threads ?? (budget === 'tiny' || cpus().length <= 2 ? 1 : cpus().length));
const dir = outDir(opts, 'overhead');

const { loadConfig } = await importDist();
const { ok: models, skipped } = await availableModels(wanted);

function overridesFor(model, size) {
  return [
    `out_dir=${join(dir, 'runs')}`,
    `name=${model}`,
    `model.name=${model}`,
    'mode=tr',
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
    `worker.threads=${threads}`,
  ];
}

/** `trqat run` of plain_loop.py --client: the loop's own step times, the controller's lines dropped. */
async function clientRun(overrides, args) {
  const sets = overrides.flatMap((o) => ['--set', o]);
  const script = [python(), '-u', join(BENCH_DIR, 'plain_loop.py'), ...args, '--client'];
  const { stdout } = await run(process.execPath, [join(DIST, 'cli.js'), 'run', '--dashboard', 'off', ...sets, '--', ...script]);
  return JSON.parse(stdout.trim().split('\n').pop());
}

const results = [];
for (const model of models) {
  const size = { ...(SIZES[budget][model] ?? SIZES[budget].default) };
  if (opts.steps) size.steps = Number(opts.steps);
  const overrides = overridesFor(model, size);
  const configPath = join(dir, `${model}.config.json`);
  writeJson(configPath, loadConfig(null, overrides));
  const reps_ = { trqat: [], plain: [], count: [], client: [] };
  const kinds = ['trqat', 'plain', 'count', 'client'];
  for (let r = 0; r < reps; r++) {
    await waitQuiet(budget === 'tiny' ? { maxWaitS: 0 } : {});
    // rotate the order so that no variant always runs first (or right after another)
    const order = kinds.map((_, i) => kinds[(i + r) % kinds.length]);
    for (const kind of order) {
      process.stderr.write(`overhead: ${model} rep ${r + 1}/${reps} ${kind}\n`);
      if (kind === 'trqat') {
        const res = await runNodeJson('trqat_run.mjs', ['--warmup', String(size.warmup), '--', ...overrides]);
        rmSync(res.run_dir, { recursive: true, force: true }); // checkpoints of big models are large
        reps_.trqat.push(res);
      } else {
        const args = [configPath, '--steps', String(size.steps), '--warmup', String(size.warmup)];
        if (kind === 'client') reps_.client.push(await clientRun(overrides, args));
        else reps_[kind].push(await runPythonJson('plain_loop.py', [...args, ...(kind === 'count' ? ['--count'] : [])]));
      }
    }
  }
  const plainMs = reps_.plain.map((p) => mean(p.step_s) * 1000);
  const trqatMs = reps_.trqat.map((t) => t.mean_step_s * 1000);
  const countPlainMs = reps_.count.map((p) => mean(p.step_s) * 1000);
  const countMs = reps_.count.map((p) => mean(p.count_s) * 1000);
  const clientMs = reps_.client.map((p) => mean(p.step_s) * 1000);
  results.push({
    model,
    size,
    reps,
    threads,
    layers: reps_.count[0].quantized_layers,
    quantized_weights: reps_.count[0].quantized_weights,
    plain_ms: plainMs,
    trqat_ms: trqatMs,
    plus_count_ms: countPlainMs,
    count_ms: countMs,
    ratio: trqatMs.map((t, i) => t / plainMs[i]),
    count_ratio: countPlainMs.map((c, i) => c / plainMs[i]),
    client_ms: clientMs,
    client_ratio: clientMs.map((c, i) => c / plainMs[i]),
    tracking_bytes: reps_.count[0].tracking_bytes,
    worker_rss: reps_.trqat.map((t) => t.worker_peak_rss),
    plain_rss: reps_.plain.map((p) => p.peak_rss),
    controller_rss: reps_.trqat.map((t) => t.controller_peak_rss),
    torch: reps_.plain[0].torch,
  });
}

const pct = (ratios) => medRange(ratios.map((r) => (r - 1) * 100), 1);
const mib = (values) => medRange(values.filter((v) => v != null).map((v) => v / 2 ** 20), 0);
const notes = [
  machineLine(),
  loadNote(),
  `torch ${results[0]?.torch ?? '?'}, CPU, ${threads} threads; W2A2, SGD, synthetic data in memory (no augmentation), fixed batch.`,
  'Figures: median [min–max] over repetitions; each repetition runs trqat, plain, plain+count and client back to back in rotating order.',
  'client = plain_loop.py --client under `trqat run` (a user\'s script with trqat.client.Client); its step time is the loop\'s own, over the same steady-state steps as plain.',
  'trqat = train() in its own Node process driving the real worker over ZeroMQ; its step time comes from metrics.jsonl timestamps (ms resolution) over the steady-state steps.',
  ...skipped.map((s) => `${s.name}: skipped, ${s.reason}.`),
];
let out = table(
  `Overhead: trqat (TR-scheduled) vs a plain PyTorch QAT loop (${budget})`,
  ['model', 'batch', 'steps × reps', 'plain ms/step', 'trqat ms/step', 'trqat overhead %', 'goal', 'count ms/step', 'plain+count overhead %', 'client ms/step', 'client overhead %', 'goal'],
  results.map((r) => [
    r.model,
    r.size.batch,
    `${r.size.steps - r.size.warmup} × ${r.reps}`,
    medRange(r.plain_ms, 1),
    medRange(r.trqat_ms, 1),
    pct(r.ratio),
    '≤ 3 (CPU)',
    medRange(r.count_ms, 2),
    pct(r.count_ratio),
    medRange(r.client_ms, 1),
    pct(r.client_ratio),
    '≤ 3',
  ]),
  notes,
);
out += '\n';
out += table(
  `Memory: transition tracking state and peak RSS (${budget})`,
  ['model', 'quantized layers', 'quantized weights', 'tracking bytes / weight', 'goal', 'worker peak RSS MiB', 'plain loop peak RSS MiB', 'controller (Node) peak RSS MiB'],
  results.map((r) => [
    r.model,
    r.layers,
    r.quantized_weights.toLocaleString('en-US'),
    r.tracking_bytes == null ? 'n/a' : (r.tracking_bytes / r.quantized_weights).toFixed(3),
    '≤ 1',
    mib(r.worker_rss),
    mib(r.plain_rss),
    mib(r.controller_rss),
  ]),
  [
    'tracking bytes = sum of TransitionCounter.prev nbytes (the stored int8 levels) / quantized weights, after a run.',
    'peak RSS = VmHWM at the end of training (the worker after its final evaluation, which needs less memory than a training step; the plain loop after its last step); the controller is a separate Node process.',
  ],
);
console.log(out);
if (opts.json) writeJson(opts.json, { budget, results, skipped, table: out });
writeJson(join(dir, `results-${budget}.json`), { budget, results, skipped, table: out });
if (results.length > 0) console.error(`overhead: median trqat/plain ratio ${results.map((r) => `${r.model} ${median(r.ratio).toFixed(3)}`).join(', ')}; client/plain ${results.map((r) => `${r.model} ${median(r.client_ratio).toFixed(3)}`).join(', ')}`);
