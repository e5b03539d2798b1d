// One trqat run in its own Node process, as the CLI would run it: the real controller (train())
// driving the real worker over ZeroMQ. Reports the step times of the steady state, the worker's
// peak RSS at the end of training (after the final evaluation, which needs less than a training step), the controller's peak RSS
// and CPU seconds (controller_cpu_s: start-up and end included),
// and on CUDA the worker's peak GPU memory (the line it logs at the end, in worker.log).
//
// Usage: node trqat_run.mjs --warmup W [--dump-config FILE] -- key=value ...   (config overrides)
//        node trqat_run.mjs --warmup W --resume RUN_DIR --                    (continue a stopped run)
// Prints one JSON line.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { importDist, writeJson } from './lib.mjs';

const cli = new Command('trqat_run.mjs')
  .description('One trqat run in its own process; prints the steady-state step times and peak memory as one JSON line')
  .argument('[overrides...]', 'config overrides, path=value, after "--"')
  .option('--warmup <steps>', 'steps left out of the step times', '5')
  .option('--resume <run-dir>', 'continue this stopped run instead of starting one')
  .option('--dump-config <file>', 'write the resolved config to this file and exit')
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2))
  .parse();
const opts = cli.opts();
const overrides = cli.args;
const warmup = Number(opts.warmup);

const { loadConfig, resume, train } = await importDist();
const resumeDir = opts.resume ?? null;
const config = resumeDir ? null : loadConfig(null, overrides);
const dump = opts.dumpConfig;
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
const cpuBefore = process.cpuUsage();
const summary = resumeDir ? await resume(resumeDir, onEvent) : await train(config, onEvent);
const cpu = process.cpuUsage(cpuBefore); // the controller runs in this process: its CPU, start-up and the end included
/** torch.cuda.max_memory_allocated as the worker logs it when it has trained on CUDA; null otherwise. */
function workerPeakGpu(dir) {
  try {
    const match = /peak GPU memory: (\d+) bytes/.exec(readFileSync(join(dir, 'worker.log'), 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

// The last step's record is stamped when the final evaluation and checkpoint are done (its statistics
// travel with them): its interval is not a training step, so the timed steps end one before it.
const timed = times.slice(0, -1);
const stepS = [];
for (let i = Math.max(1, warmup); i < timed.length; i++) stepS.push(timed[i] - timed[i - 1]);
const span = timed.length > warmup + 1 ? (timed.at(-1) - timed[warmup]) / (timed.length - 1 - warmup) : null;
console.log(
  JSON.stringify({
    run_dir: summary.run_dir,
    steps: times.length,
    step_s: stepS,
    mean_step_s: span,
    worker_peak_rss: workerPeak,
    worker_peak_gpu_bytes: workerPeakGpu(summary.run_dir),
    controller_peak_rss: process.resourceUsage().maxRSS * 1024,
    controller_cpu_s: (cpu.user + cpu.system) / 1e6,
    layers,
    quantized_weights: quantizedWeights,
    final_top1: summary.final_top1,
  }),
);
