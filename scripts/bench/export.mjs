// Benchmark 5: the deployable model (trqat export).
//   a) size on disk of every shipped model at W1, W2 and W4 (trqat format: levels bit-packed), against
//      the same model in float32 (export_bench.py sizes)
//   b) CPU inference latency per image, ResNet-20 (CIFAR-10, 32x32) and ResNet-18 (ImageNet, 224x224),
//      W2A2: ONNX Runtime (onnxruntime-node, in this process) against PyTorch eager on the training
//      model (fake quantization) and on the converted model (int8 levels). The variants alternate
//      within each repetition, in rotating order.
//
// Usage: node scripts/bench/export.mjs [--tiny|--quick|--full] [options] (--help: the options)
import { cpus } from 'node:os';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { availableModels, importDist, loadNote, machineLine, median, medRange, outDir, parseArgs, pick, positiveInt, runPythonJson, table, waitQuiet, writeJson } from './lib.mjs';

const opts = parseArgs('export.mjs', 'The deployable model: sizes on disk at W1, W2, W4, and CPU latency of ONNX Runtime against PyTorch eager', (cli) =>
  cli
    .option('--models <list>', 'models of the size table, comma-separated (default: resnet20 on tiny, else every model)')
    .option('--latency-models <list>', 'models of the latency table (default: resnet20 on tiny, else resnet20,resnet18)')
    .option('--reps <n>', 'repetitions (default by budget: 1, 3, 5)', positiveInt)
    .option('--threads <n>', 'CPU threads (default: 1 on tiny or on 2 cores, else every core)', positiveInt),
);
const budget = opts.budget;
const reps = Number(opts.reps ?? pick(budget, { tiny: 1, quick: 3, full: 5 }));
const ALL = (await importDist('config/schema.js')).MODEL_NAMES.join(',');
const sizeModels = (opts.models ?? pick(budget, { tiny: 'resnet20', quick: ALL, full: ALL })).split(',');
const latencyModels = (opts.latencyModels ?? pick(budget, { tiny: 'resnet20', quick: 'resnet20,resnet18', full: 'resnet20,resnet18' })).split(',');
const batches = pick(budget, { tiny: [1], quick: [1, 32], full: [1, 32] });
// iterations per measurement, by model: ResNet-18 at 224x224 is ~50x the work of ResNet-20 at 32x32
const iters = (model, batch) => pick(budget, { tiny: 2, quick: 20, full: 50 }) * (model === 'resnet20' ? 1 : 0.25) * (batch === 1 ? 1 : 0.2);
// One thread on small machines (see scaling.mjs): with every core busy, any other process stalls OpenMP regions.
const threads = Number(opts.threads ?? (budget === 'tiny' || cpus().length <= 2 ? 1 : cpus().length));
const dir = outDir(opts, 'export');
const bytes = (n) => n.toLocaleString('en-US');

// a) sizes ---------------------------------------------------------------------------------------
const sized = await availableModels(sizeModels);
process.stderr.write(`export: sizes of ${sized.ok.join(', ')}\n`);
const sizes = sized.ok.length ? await runPythonJson('export_bench.py', ['sizes', '--models', sized.ok.join(','), '--bits', '1,2,4', '--out', dir, '--threads', String(threads)]) : [];
let out = table(
  `Model size on disk: trqat format at W1, W2, W4 vs FP32 (${budget})`,
  ['model', 'input', 'parameters', 'quantized weights', 'FP32 bytes', 'W1 bytes (×)', 'W2 bytes (×)', 'W4 bytes (×)', 'FP32 torch.save bytes'],
  sizes.map((r) => [
    r.model,
    r.model === 'resnet20' ? '32×32, 10 classes' : '224×224, 1000 classes',
    bytes(r.params),
    `${bytes(r.quantized_weights)} (${((100 * r.quantized_weights) / r.params).toFixed(1)}%)`,
    bytes(r.fp32),
    ...['1', '2', '4'].map((b) => `${bytes(r.bits[b])} (${(r.fp32 / r.bits[b]).toFixed(1)}×)`),
    bytes(r.torch_save_fp32),
  ]),
  [
    'trqat format: each quantized layer\'s levels bit-packed at its bit-width, plus its scales; everything else float32 (first conv, last linear, BN, ReActNet\'s real-valued shortcuts, DeiT\'s embeddings and norms).',
    'FP32 bytes: the same container with the float32 weights in place of the packed levels and scales (trqat.deploy.exported_size(full_precision=True)); torch.save: the float model\'s state dict.',
    'Quantized with the config\'s defaults (first and last layers full precision, per-tensor scales); W1 on a model other than ReActNet only to show the size.',
    ...(sized.skipped.length ? [`skipped: ${sized.skipped.map((s) => `${s.name} (${s.reason})`).join('; ')}`] : []),
  ],
);

// b) latency -------------------------------------------------------------------------------------
const latency = (await availableModels(latencyModels)).ok;
const results = [];
let torchVersion = '?';
for (const model of latency) {
  const folder = join(dir, `latency-${model}`);
  process.stderr.write(`export: preparing ${model}\n`);
  const { input_shape: shape } = await runPythonJson('export_bench.py', ['prepare', '--model', model, '--out', folder, '--threads', String(threads)]);
  const session = await ort.InferenceSession.create(join(folder, 'model.onnx'), { intraOpNumThreads: threads, interOpNumThreads: 1 });
  for (const batch of batches) {
    const n = Math.max(2, Math.round(iters(model, batch)));
    const row = { model, batch, iters: n, onnx: [], fake_quant: [], int_levels: [] };
    const input = new ort.Tensor('float32', Float32Array.from({ length: batch * shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i)), [batch, ...shape]);
    await session.run({ input }); // warm-up
    const timeOnnx = async () => {
      const times = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await session.run({ input });
        times.push(performance.now() - t0);
      }
      row.onnx.push(median(times) / batch);
    };
    const timeTorch = async () => {
      const eager = await runPythonJson('export_bench.py', ['time', '--dir', folder, '--batch', String(batch), '--iters', String(n), '--threads', String(threads)]);
      row.fake_quant.push(eager.fake_quant);
      row.int_levels.push(eager.int_levels);
      torchVersion = eager.torch;
    };
    for (let r = 0; r < reps; r++) {
      await waitQuiet(budget === 'tiny' ? { maxWaitS: 0 } : {});
      process.stderr.write(`export: ${model} batch ${batch} rep ${r + 1}/${reps}\n`);
      for (const step of r % 2 === 0 ? [timeOnnx, timeTorch] : [timeTorch, timeOnnx]) await step();
    }
    results.push(row);
  }
  await session.release();
}
const onnxVersion = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')).version;
out += '\n';
out += table(
  `CPU inference latency per image: ONNX Runtime vs PyTorch eager, W2A2 (${budget})`,
  ['model', 'batch', 'iters × reps', 'ONNX Runtime ms/image', 'PyTorch eager, converted (int8 levels) ms/image', 'PyTorch eager, training model (fake quant) ms/image', 'ONNX Runtime speed-up vs converted'],
  results.map((r) => [
    r.model,
    r.batch,
    `${r.iters} × ${reps}`,
    medRange(r.onnx, 3),
    medRange(r.int_levels, 3),
    medRange(r.fake_quant, 3),
    `${(median(r.int_levels) / median(r.onnx)).toFixed(2)}×`,
  ]),
  [
    machineLine(),
    loadNote(),
    `onnxruntime-node ${onnxVersion} (CPU execution provider, default graph optimizations), torch ${torchVersion}, ${threads} thread(s) each; ResNet-20 at 32×32 (10 classes), ResNet-18 at 224×224 (1000 classes); random weights, activation scales from one random batch.`,
    'Figures: median [min–max] over repetitions of the median over iterations; the ONNX graph computes the quantized layers in float32 (int8 levels dequantized exactly), as PyTorch does.',
  ],
);
console.log(out);
writeJson(join(dir, `results-${budget}.json`), { budget, sizes, results, table: out });
