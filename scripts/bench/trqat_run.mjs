// One trqat run in its own Node process, as the CLI would run it: the real controller (train())
// driving the real worker over ZeroMQ. Reports the step times of the steady state, the worker's
// peak RSS at the end of training (after the final evaluation, which needs less than a training step) and the controller's peak RSS,
// and on CUDA the worker's peak GPU memory (the line it logs at the end, in worker.log).
//
// Usage: node trqat_run.mjs --warmup W --dump-config FILE? -- key=value ...   (config overrides)
//        node trqat_run.mjs --warmup W --resume RUN_DIR --                    (continue a stopped run)
// Prints one JSON line.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { importDist, writeJson } from './lib.mjs';

const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
const own = sep >= 0 ? argv.slice(0, sep) : [];
const overrides = sep >= 0 ? argv.slice(sep + 1) : argv;
const opt = (name, fallback) => {
  const i = own.indexOf(`--${name}`);
  return i >= 0 ? own[i + 1] : fallback;
};
const warmup = Number(opt('warmup', '5'));

const { loadConfig, resume, train } = await importDist();
const resumeDir = opt('resume', null);
const config = resumeDir ? null : loadConfig(null, overrides);
const dump = opt('dump-config', null);
if (dump) {
  writeJson(dump, config);
  process.exit(0);
}

function vmHwm(pid) {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

const times = [];
let workerPid = null;
let runDir = null;
let workerPeak = null;
let layers = 0;
let quantizedWeights = 0;
const onEvent = {
  onEvent: (event) => {
    if (event.type === 'started') {
      runDir = event.runDir;
      layers = event.layers;
      quantizedWeights = event.quantizedWeights;
      workerPid = JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')).ranks?.[0]?.pid ?? null;
    } else if (event.type === 'step') {
      times.push(event.record.time);
      // The last step's record arrives with the final evaluation's answer (its statistics travel with it).
      if (event.record.step === event.plan.total_steps - 1 && workerPid) workerPeak = vmHwm(workerPid);
    }
  },
};
const summary = resumeDir ? await resume(resumeDir, onEvent) : await train(config, onEvent);
/** torch.cuda.max_memory_allocated as the worker logs it when it has trained on CUDA; null otherwise. */
function workerPeakGpu(dir) {
  try {
    const match = /peak GPU memory: (\d+) bytes/.exec(readFileSync(join(dir, 'worker.log'), 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

const stepS = [];
for (let i = Math.max(1, warmup); i < times.length; i++) stepS.push(times[i] - times[i - 1]);
const span = times.length > warmup + 1 ? (times.at(-1) - times[warmup]) / (times.length - 1 - warmup) : null;
console.log(
  JSON.stringify({
    run_dir: summary.run_dir,
    steps: times.length,
    step_s: stepS,
    mean_step_s: span,
    worker_peak_rss: workerPeak,
    worker_peak_gpu_bytes: workerPeakGpu(summary.run_dir),
    controller_peak_rss: process.resourceUsage().maxRSS * 1024,
    layers,
    quantized_weights: quantizedWeights,
    final_top1: summary.final_top1,
  }),
);
