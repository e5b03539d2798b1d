// Benchmark 2: the bridge. Round-trip latency of the per-step exchange (`step` -> `lr`) and the
// controller's throughput with a worker that does no tensor work, against a bare ZeroMQ
// request/reply between the same two runtimes, measured in the same run, interleaved.
//
// The Python side is the same in every variant: the worker's own encode/send/poll/recv/decode path.
// The Node side differs:
//   bare      ROUTER answers each frame with a fixed, pre-encoded `lr` frame (no decoding at all)
//   msgpack   + msgpackr unpack of the frame and pack of the reply, no validation
//   protocol  + the controller's decodeWorkerMessage (zod validation) and encode (src/bridge/protocol.ts)
//   trqat     the real controller: train() with BridgeServer, SessionTable, StepLoop, TrController.step and the
//             metrics log, driving null_worker.py (the real trqat.worker.Worker without tensors)
// Round trip = on the Python side, from before encoding `step` to after decoding `lr`.
//
// Usage: node scripts/bench/bridge.mjs [--tiny|--quick|--full] [options] (--help: the options)
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { Packr, Unpackr } from 'msgpackr';
import { Router } from 'zeromq';
import { BENCH_DIR, importDist, loadNote, waitQuiet, machineLine, median, medRange, outDir, parseArgs, pick, positiveInt, python, quantile, ROOT, table, writeJson } from './lib.mjs';

const opts = parseArgs('bridge.mjs', 'The bridge: round trip of the per-step exchange and controller throughput, against bare ZeroMQ', (cli) =>
  cli
    .option('--reps <n>', 'repetitions (default by budget: 1, 3, 5)', positiveInt)
    .option('--steps <n>', 'steps per measurement (default by budget: 300, 4000, 20000)', positiveInt)
    .option('--layers <list>', 'quantized layer counts, comma-separated (default by budget: 18; 18,60; 18,60,200)'),
);
const budget = opts.budget;
const steps = Number(opts.steps ?? pick(budget, { tiny: 300, quick: 4000, full: 20000 }));
const reps = Number(opts.reps ?? pick(budget, { tiny: 1, quick: 3, full: 5 }));
const layerCounts = (opts.layers ?? pick(budget, { tiny: '18', quick: '18,60', full: '18,60,200' })).split(',').map(Number);
const warm = Math.min(200, Math.floor(steps / 10));
const dir = outDir(opts, 'bridge');

const { loadConfig, train } = await importDist();
const { decodeWorkerMessage, encode, PROTOCOL_VERSION } = await importDist('bridge/protocol.js');

/** An `lr` reply as the controller sends it. */
const lrBody = (step) => ({ step, lr_quant: 0.1, lr_other: 0.1, k: null, K: 0, R: 1e-3, U: 0.1, stop: false, eval: false, save: null, state: { K: 0, U: 0.1, last_step: step } });

const pyEnv = { PYTHONPATH: [join(ROOT, 'python'), BENCH_DIR, process.env.PYTHONPATH].filter(Boolean).join(':') };

/** Node ROUTER + bare_peer.py; returns round trips in µs. */
async function socketPair(mode, layers) {
  const sock = new Router({ linger: 0 });
  await sock.bind('tcp://127.0.0.1:*');
  const packr = new Packr({ useRecords: false });
  const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
  let fixed = null;
  let seq = 0;
  const serve = (async () => {
    for await (const [id, frame] of sock) {
      let reply;
      if (mode === 'bare') {
        fixed ??= encode('lr', unpackr.unpack(frame).sid, 0, lrBody(0));
        reply = fixed;
      } else if (mode === 'msgpack') {
        const msg = unpackr.unpack(frame);
        reply = packr.pack({ v: PROTOCOL_VERSION, type: 'lr', sid: msg.sid, seq: seq++, body: lrBody(msg.body.step) });
      } else {
        const msg = decodeWorkerMessage(frame);
        reply = encode('lr', msg.sid, seq++, lrBody(msg.body.step));
      }
      await sock.send([id, reply]);
    }
  })().catch(() => undefined);
  const child = spawn(python(), ['-u', join(BENCH_DIR, 'bare_peer.py'), sock.lastEndpoint, String(steps), String(layers)], {
    env: { ...process.env, ...pyEnv },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.on('data', (c) => (stdout += c));
  const code = await new Promise((res) => child.on('close', res));
  sock.close();
  await serve;
  if (code !== 0) throw new Error(`bare_peer.py exited with ${code}`);
  return { rtt_us: JSON.parse(stdout.trim().split('\n').pop()).rtt_ns.slice(warm).map((n) => n / 1000) };
}

/** The real controller driving the no-tensor worker. */
async function trqatRun(layers) {
  const out = join(dir, `null-${layers}-${process.pid}.json`);
  process.env.TRQAT_BENCH_PYTHON = python();
  process.env.TRQAT_BENCH_LAYERS = String(layers);
  process.env.TRQAT_BENCH_OUT = out;
  const config = loadConfig(null, [
    `out_dir=${join(dir, 'runs')}`,
    'name=nullworker',
    'data.name=synthetic',
    `train.steps=${steps}`,
    'train.eval_every=0',
    'train.checkpoint_every=0',
    `worker.python=${join(BENCH_DIR, 'null-worker.sh')}`,
    'train.diagnostics_every=0', // the null worker has no weights to measure
  ]);
  let cpu0 = null;
  let t0 = null;
  let cpuPerStep = null;
  let stepsPerS = null;
  const summary = await train(config, {
    onEvent: (event) => {
      if (event.type !== 'step') return;
      const { step, time } = event.record;
      if (step === warm) {
        cpu0 = process.cpuUsage();
        t0 = performance.now();
      } else if (step === steps - 1 && cpu0) {
        const cpu = process.cpuUsage(cpu0);
        const n = steps - 1 - warm;
        cpuPerStep = (cpu.user + cpu.system) / n;
        stepsPerS = n / ((performance.now() - t0) / 1000);
      }
    },
  });
  const worker = JSON.parse(readFileSync(out, 'utf8'));
  rmSync(out, { force: true });
  rmSync(summary.run_dir, { recursive: true, force: true });
  const n = worker.rtt_ns.length;
  return {
    rtt_us: worker.rtt_ns.slice(warm).map((v) => v / 1000),
    steps_per_s: stepsPerS,
    node_cpu_us_per_step: cpuPerStep,
    python_cpu_us_per_step: (worker.cpu_s / n) * 1e6,
  };
}

mkdirSync(dir, { recursive: true });
const modes = ['bare', 'msgpack', 'protocol', 'trqat'];
const results = {};
for (const layers of layerCounts) {
  results[layers] = Object.fromEntries(modes.map((m) => [m, []]));
  for (let r = 0; r < reps; r++) {
    await waitQuiet(budget === 'tiny' ? { maxWaitS: 0 } : {});
    const order = modes.map((_, i) => modes[(i + r) % modes.length]);
    for (const mode of order) {
      process.stderr.write(`bridge: ${layers} layers, rep ${r + 1}/${reps}, ${mode}\n`);
      results[layers][mode].push(mode === 'trqat' ? await trqatRun(layers) : await socketPair(mode, layers));
    }
  }
}

const p = (runs, q) => runs.map((run) => quantile(run.rtt_us, q));
const rows = [];
for (const layers of layerCounts) {
  const bareP50 = p(results[layers].bare, 0.5);
  for (const mode of modes) {
    const runs = results[layers][mode];
    const p50 = p(runs, 0.5);
    const added = p50.map((v, i) => v - bareP50[i]);
    rows.push([
      layers,
      mode,
      medRange(p50, 1),
      medRange(p(runs, 0.99), 1),
      mode === 'bare' ? '–' : medRange(added, 1),
      mode === 'trqat' ? '< 50' : '',
    ]);
  }
}
let text = table(
  `Bridge: round trip of the per-step exchange, µs (${budget})`,
  ['layers (counts per message)', 'Node side', 'p50 µs', 'p99 µs', 'added to bare at p50, µs', 'goal (added, µs)'],
  rows,
  [
    machineLine(),
    loadNote(),
    `${steps} exchanges per run (first ${warm} dropped) × ${reps} repetitions, interleaved in rotating order; figures are median [min–max] over repetitions of each run's p50/p99.`,
    'Python side identical in every row (trqat.protocol encode + zmq DEALER send, poll + recv + decode + checks); ZeroMQ over tcp://127.0.0.1.',
    'bare: fixed pre-encoded reply; msgpack: + unpack/pack; protocol: + zod validation and the real encode; trqat: the real controller (train(), BridgeServer, SessionTable, StepLoop, TrController, metrics log) with a no-tensor worker.',
  ],
);
text += '\n';
text += table(
  `Controller throughput with a no-tensor worker (${budget})`,
  ['layers', 'steps/s (end to end)', 'goal', 'Node CPU µs/step', 'Node-bound steps/s (1e6 / CPU µs)', 'worker (Python) CPU µs/step', 'bare exchange/s (1e6 / mean RTT)'],
  layerCounts.map((layers) => {
    const t = results[layers].trqat;
    const bareMean = results[layers].bare.map((r) => r.rtt_us.reduce((s, v) => s + v, 0) / r.rtt_us.length);
    return [
      layers,
      medRange(t.map((r) => r.steps_per_s), 0),
      '> 5000',
      medRange(t.map((r) => r.node_cpu_us_per_step), 1),
      medRange(t.map((r) => 1e6 / r.node_cpu_us_per_step), 0),
      medRange(t.map((r) => r.python_cpu_us_per_step), 1),
      medRange(bareMean.map((m) => 1e6 / m), 0),
    ];
  }),
  [
    'steps/s: training steps per wall-clock second between the first steady-state step and the last, as the controller logs them (one train command; no evaluation or checkpoint in between).',
    'Node CPU µs/step: process.cpuUsage() of the controller over those steps, i.e. what one step costs the controller; the worker runs on the other core.',
  ],
);
console.log(text);
const summary = Object.fromEntries(
  layerCounts.map((l) => [l, Object.fromEntries(modes.map((m) => [m, results[l][m].map(({ rtt_us, ...rest }) => ({ ...rest, p50: quantile(rtt_us, 0.5), p99: quantile(rtt_us, 0.99) }))]))]),
);
writeJson(join(dir, `results-${budget}.json`), { budget, steps, reps, summary, table: text });
const s = layerCounts[0];
console.error(
  `bridge: ${s} layers: trqat p50 ${median(p(results[s].trqat, 0.5)).toFixed(1)} µs vs bare ${median(p(results[s].bare, 0.5)).toFixed(1)} µs; ` +
    `${median(results[s].trqat.map((r) => r.steps_per_s)).toFixed(0)} steps/s`,
);
