// Benchmark 4: how the costs grow with model size and with the number of quantized layers.
//   a) per model (ResNet-20 .. ResNet-50 shapes, those the registry has): plain step time, the
//      worker's counting time per step and its share, tracking state (plain_loop.py --count)
//   b) counting time against the number of quantized layers at a fixed number of weights
//      (count_layers.py)
//   c) the controller's own per-step CPU cost against the number of layers: decode + validate the
//      `step` message, TrController.step, encode the `lr` reply (in-process, no sockets)
// The end-to-end overhead with the bridge is in overhead.mjs (run it with --models to cover more).
//
// Usage: node scripts/bench/scaling.mjs [--tiny|--quick|--full] [options] (--help: the options)
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { availableModels, importDist, loadNote, waitQuiet, machineLine, mean, median, medRange, outDir, parseArgs, pick, positiveInt, runPythonJson, table, writeJson } from './lib.mjs';

const opts = parseArgs('scaling.mjs', 'How the costs grow with model size and with the number of quantized layers', (cli) =>
  cli
    .option('--models <list>', 'models, comma-separated (default: resnet20 on tiny, else resnet20,resnet18,resnet34,resnet50)')
    .option('--reps <n>', 'repetitions (default by budget: 1, 3, 5)', positiveInt)
    .option('--batch <n>', 'batch size (default by budget: 4, 16, 32)', positiveInt)
    .option('--threads <n>', 'CPU threads (default: 1 on tiny or on 2 cores, else every core)', positiveInt),
);
const budget = opts.budget;
const reps = Number(opts.reps ?? pick(budget, { tiny: 1, quick: 3, full: 5 }));
const wanted = (opts.models ?? pick(budget, { tiny: 'resnet20', quick: 'resnet20,resnet18,resnet34,resnet50', full: 'resnet20,resnet18,resnet34,resnet50' })).split(',');
const batch = Number(opts.batch ?? pick(budget, { tiny: 4, quick: 16, full: 32 }));
const steps = pick(budget, { tiny: 4, quick: 8, full: 20 });
const layerCounts = pick(budget, { tiny: '4,64', quick: '4,16,64,256,1024', full: '4,16,64,256,1024' });
const countWeights = pick(budget, { tiny: 100_000, quick: 1_000_000, full: 4_000_000 });
const controllerLayers = pick(budget, { tiny: [18, 200], quick: [18, 60, 200, 1000], full: [18, 60, 200, 1000, 5000] });
const controllerIters = pick(budget, { tiny: 2000, quick: 20000, full: 50000 });
// One thread on small machines and in tiny runs (beside other tests): with all cores in use, any other
// process makes every OpenMP region wait for a descheduled thread, and step times jump 10-100x.
const threads = Number(opts.threads ?? (budget === 'tiny' || cpus().length <= 2 ? 1 : cpus().length));
const dir = outDir(opts, 'scaling');

const { loadConfig, TrController } = await importDist();
const { decodeWorkerMessage, encode, PROTOCOL_VERSION } = await importDist('bridge/protocol.js');
const { ok: models, skipped } = await availableModels(wanted);

// a) per model --------------------------------------------------------------------------------
const perModel = Object.fromEntries(models.map((m) => [m, []]));
const configs = {};
for (const model of models) {
  const config = loadConfig(null, [
    `model.name=${model}`,
    'data.name=synthetic',
    `data.synthetic.train_size=${batch * 4}`,
    'data.synthetic.test_size=16',
    `data.batch_size=${batch}`,
    'data.augment=false',
    'worker.device=cpu',
    `worker.threads=${threads}`,
  ]);
  configs[model] = join(dir, `${model}.config.json`);
  writeJson(configs[model], config);
}
for (let r = 0; r < reps; r++) {
  await waitQuiet(budget === 'tiny' ? { maxWaitS: 0 } : {});
  for (let i = 0; i < models.length; i++) {
    const model = models[(i + r) % models.length];
    process.stderr.write(`scaling: ${model} rep ${r + 1}/${reps}\n`);
    perModel[model].push(await runPythonJson('plain_loop.py', [configs[model], '--steps', String(steps), '--warmup', '2', '--count']));
  }
}

// b) counting against layers ------------------------------------------------------------------
const layerRuns = [];
for (let r = 0; r < reps; r++) {
  await waitQuiet(budget === 'tiny' ? { maxWaitS: 0 } : {});
  process.stderr.write(`scaling: counting vs layers rep ${r + 1}/${reps}\n`);
  layerRuns.push(
    await runPythonJson('count_layers.py', ['--weights', String(countWeights), '--layers', layerCounts, '--reps', String(pick(budget, { tiny: 5, quick: 20, full: 40 })), '--threads', String(threads)]),
  );
}

// c) controller per-step cost against layers --------------------------------------------------
const controllerRows = [];
const packr = new Packr({ useRecords: false });
for (const layers of [controllerLayers[0], ...controllerLayers]) {
  const warmup = controllerRows.length === 0 && !controllerRows.warmed;
  const sizes = Array.from({ length: layers }, (_, i) => 2304 * (1 + (i % 16)));
  const samples = [];
  for (let r = 0; r < reps; r++) {
    const config = loadConfig(null, ['train.steps=1000000']);
    const controller = new TrController(config, controllerIters + 10, sizes);
    const frames = Array.from({ length: 64 }, (_, j) =>
      packr.pack({ v: PROTOCOL_VERSION, type: 'step', sid: 'abcdef0123456789', seq: j, body: { step: 0, counts: sizes.map((n) => (n * (j + 1)) % 97), last: { loss: 0.5, correct: 60, samples: 128 } } }),
    );
    const t0 = process.hrtime.bigint();
    for (let t = 0; t < controllerIters; t++) {
      const msg = decodeWorkerMessage(frames[t % 64]);
      const d = controller.step(t, t === 0 ? null : msg.body.counts);
      encode('lr', msg.sid, t, { step: t, lr_quant: d.lr_quant, lr_other: d.lr_other, k: d.k, K: d.K, R: d.R, U: d.U, stop: false, eval: false, save: null, state: controller.stateDict() });
    }
    samples.push(Number(process.hrtime.bigint() - t0) / 1000 / controllerIters);
  }
  if (warmup) controllerRows.warmed = true; // the first pass only warms up the JIT
  else controllerRows.push({ layers, us: samples });
}

// tables --------------------------------------------------------------------------------------
const rowsA = models.map((model) => {
  const runs = perModel[model];
  const stepMs = runs.map((p) => (mean(p.step_s) - mean(p.count_s)) * 1000);
  const countMs = runs.map((p) => mean(p.count_s) * 1000);
  const share = runs.map((p, i) => (countMs[i] / stepMs[i]) * 100);
  const r0 = runs[0];
  return [
    model,
    r0.quantized_layers,
    (r0.quantized_weights / 1e6).toFixed(2),
    medRange(stepMs, 1),
    medRange(countMs, 2),
    medRange(share, 2),
    ((r0.tracking_bytes ?? 0) / 2 ** 20).toFixed(2),
    ((r0.tracking_bytes ?? 0) / r0.quantized_weights).toFixed(3),
  ];
});
let text = table(
  `Scaling with model size: counting cost per step in the worker (${budget})`,
  ['model', 'quantized layers', 'quantized weights (M)', `plain step ms (batch ${batch})`, 'count ms/step', 'count % of step', 'tracking state MiB', 'bytes / weight'],
  rowsA,
  [
    machineLine(),
    loadNote(),
    `CPU, ${threads} threads, W2A2 (first/last layers FP), synthetic 28×28 input; ${steps - 2} steps per run after 2 warm-up steps, ${reps} repetitions interleaved; median [min–max].`,
    'count = TransitionCounter.update() (levels of every quantized weight, compare with the stored int8 levels, one host transfer); plain step = the rest of the step.',
    ...skipped.map((s) => `${s.name}: skipped, ${s.reason}.`),
  ],
);
const layerList = layerRuns[0].map((row) => row.layers);
text += '\n';
text += table(
  `Scaling with the number of quantized layers: counting time at ~${(countWeights / 1e6).toFixed(1)}M weights (${budget})`,
  ['quantized layers', 'weights', 'count ms (median over calls)', 'µs per layer'],
  layerList.map((layers, i) => {
    const ms = layerRuns.map((run) => run[i].median_s * 1000);
    return [layers, layerRuns[0][i].weights.toLocaleString('en-US'), medRange(ms, 2), ((median(ms) * 1000) / layers).toFixed(1)];
  }),
  ['Stacks of square quantized Linear layers holding the same number of weights in all; each call follows a small random update of every weight, as in training.'],
);
text += '\n';
text += table(
  `Scaling with the number of quantized layers: controller CPU per step, no sockets (${budget})`,
  ['quantized layers', 'decode + TrController.step + encode, µs/step', 'controller-bound steps/s'],
  controllerRows.map((row) => [row.layers, medRange(row.us, 2), medRange(row.us.map((u) => 1e6 / u), 0)]),
  [`${controllerIters} steps per repetition in one Node process; decodeWorkerMessage (msgpack + zod) of a \`step\` message with one count per layer, TrController.step, encode of the \`lr\` reply.`],
);
console.log(text);
writeJson(join(dir, `results-${budget}.json`), { budget, perModel, layerRuns, controllerRows, skipped, table: text });
