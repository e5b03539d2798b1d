// The dashboard on a long run: a synthetic metrics.jsonl of 600K steps and 120 quantized layers
// (the shape of an ImageNet run), read, downsampled and served as the dashboard does, with the
// same figures for the naive alternative beside them.
// Usage: node scripts/bench/dashboard.mjs [--tiny|--quick|--full] [options] (--help: the options)
import { closeSync, existsSync, openSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { importDist, loadNote, machineLine, medRange, outDir, parseArgs, pick, positiveInt, table, waitQuiet, writeJson } from './lib.mjs';

const opts = parseArgs('dashboard.mjs', 'The dashboard on a long run: a synthetic metrics.jsonl read, downsampled and served as the dashboard does', (cli) =>
  cli
    .option('--steps <n>', 'steps of the synthetic run (default by budget: 3000, 600000, 600000)', positiveInt)
    .option('--layers <n>', 'quantized layers of the synthetic run (default by budget: 12, 120, 120)', positiveInt)
    .option('--regenerate', 'write the synthetic metrics.jsonl again even when the folder has it'),
);
const steps = Number(opts.steps ?? pick(opts.budget, { tiny: 3000, quick: 600_000, full: 600_000 }));
const layers = Number(opts.layers ?? pick(opts.budget, { tiny: 12, quick: 120, full: 120 }));
const reps = pick(opts.budget, { tiny: 1, quick: 3, full: 5 });
const DIAGNOSTICS_EVERY = 100;
const EVAL_EVERY = Math.max(1, Math.round(steps / 90));

const { RunReader } = await importDist('dashboard/reader.js');
const { RunData } = await importDist('dashboard/run-data.js');
const { viewPayload } = await importDist('dashboard/view.js');
const { reportHtml } = await importDist('dashboard/report.js');

const dir = outDir(opts, `dashboard-${opts.budget}`);
const metricsPath = join(dir, 'metrics.jsonl');

// ---------------------------------------------------------------------------------------------
// A run folder with a plausible record: k noisy around a cosine R, per-layer counts of layers of
// 2K..2.4M weights, a distance histogram every 100 steps, an evaluation every ~1% of the run.
const numels = Array.from({ length: layers }, (_, i) => 2304 * 2 ** (i % 11));
const total = numels.reduce((a, b) => a + b, 0);
let seed = 12345;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);

function stepLine(t) {
  const R = 0.005 * 0.5 * (1 + Math.cos((Math.PI * t) / steps));
  const k = t === 0 ? null : R * (0.5 + random());
  const counts = t === 0 ? null : numels.map((n) => Math.round(n * (k ?? 0) * (0.5 + random())));
  const record = {
    type: 'step', step: t, k, K: R * 1.05, R, U: 0.1 * (1 - t / steps), lr_quant: 0.1 * (1 - t / steps), lr_other: 0.1 * (1 - t / steps),
    epoch: t / 5000, counts, loss: 2 * Math.exp(-t / steps) + 0.3 * random(), acc: 60 + 30 * random(), samples: 256, steps_per_s: 8 + random(), time: 1.8e9 + t / 8,
  };
  if (t % DIAGNOSTICS_EVERY === 0) {
    record.dist = {
      hist: numels.map((n) => { const h = Array.from({ length: 11 }, () => Math.floor((n / 11) * (0.8 + 0.2 * random()))); h[10] = n - h.slice(0, 10).reduce((a, b) => a + b, 0); return h; }),
      mean: numels.map(() => 0.2 + 0.1 * random()),
    };
  }
  return JSON.stringify(record);
}

function generate() {
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ mode: 'tr', tr: { scope: 'network', r0: 0.005 }, model: { name: 'resnet50' }, quant: { weight_bits: 2, act_bits: 2 } }));
  writeFileSync(join(dir, 'run.json'), JSON.stringify({
    status: 'completed', checkpoint_step: steps, started: '', updated: '',
    plan: { total_steps: steps, steps_per_epoch: 5000, eval_every: EVAL_EVERY, checkpoint_every: EVAL_EVERY, controller: { momentum: 0.99, eta: 0.1 } },
    layers: numels.map((numel, i) => ({ name: `layers.${i}.conv`, kind: 'conv', numel, weight_bits: 2, act_bits: 2 })),
  }));
  const fd = openSync(metricsPath, 'w');
  let chunk = [];
  for (let t = 0; t < steps; t++) {
    chunk.push(stepLine(t));
    if ((t + 1) % EVAL_EVERY === 0) {
      chunk.push(JSON.stringify({ type: 'eval', step: t + 1, epoch: (t + 1) / 5000, top1: 50 + (20 * t) / steps, loss: 1.5, samples: 50000, seconds: 60, tracking_error: 0.1, time: 1.8e9 + t / 8 }));
    }
    if (chunk.length >= 2000) {
      writeSync(fd, `${chunk.join('\n')}\n`);
      chunk = [];
    }
  }
  if (chunk.length > 0) writeSync(fd, `${chunk.join('\n')}\n`);
  closeSync(fd);
}

const started = Date.now();
if (!existsSync(metricsPath) || opts.regenerate) generate();
const fileBytes = statSync(metricsPath).size;
process.stderr.write(`bench dashboard: ${(fileBytes / 2 ** 20).toFixed(0)} MiB of metrics (${steps} steps, ${layers} layers) in ${dir}\n`);

const ms = (from) => Number(process.hrtime.bigint() - from) / 1e6;
const now = () => process.hrtime.bigint();
const mib = (bytes) => (bytes / 2 ** 20).toFixed(1);
const kib = (bytes) => (bytes / 1024).toFixed(0);

// ---------------------------------------------------------------------------------------------
// 1. Loading: the reader (JSON + schema + columns and bins) beside a bare JSON.parse of every line.
const loads = [];
const bare = [];
let reader = null;
let heapBytes = 0;
const quiet = () => waitQuiet(opts.budget === 'tiny' ? { maxWaitS: 0 } : {});
for (let r = 0; r < reps; r++) {
  await quiet();
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  let t = now();
  reader = new RunReader(dir);
  await reader.refresh();
  loads.push(ms(t));
  heapBytes = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - heapBefore;
  t = now();
  let n = 0;
  const fd = openSync(metricsPath, 'r');
  const buffer = Buffer.alloc(4 << 20);
  let rest = '';
  for (let pos = 0; ; ) {
    const got = readSync(fd, buffer, 0, buffer.length, pos);
    if (got === 0) break;
    pos += got;
    const lines = (rest + buffer.toString('utf8', 0, got)).split('\n');
    rest = lines.pop();
    for (const line of lines) if (line) n += JSON.parse(line).step >= 0 ? 1 : 0;
  }
  closeSync(fd);
  bare.push(ms(t));
  if (n === 0) throw new Error('nothing parsed');
}
const data = reader.data;
if (data.scalars.length !== steps) throw new Error(`read ${data.scalars.length} steps, expected ${steps}`);

// ---------------------------------------------------------------------------------------------
// 2. What the page gets: the payload (downsampled), as JSON and gzipped, beside the raw series.
function serve(request) {
  const times = [];
  let json = '';
  let gz = Buffer.alloc(0);
  for (let r = 0; r < Math.max(3, reps); r++) {
    const t = now();
    json = JSON.stringify(viewPayload([data], request));
    gz = gzipSync(json);
    times.push(ms(t));
  }
  return { times, json: json.length, gzip: gz.length };
}
await quiet();
const full = serve({ points: 1000 });
const seriesOnly = serve({ points: 1000, heatmaps: false });
const zoomed = serve({ points: 1000, from: Math.round(steps * 0.45), to: Math.round(steps * 0.55) });
const late = serve({ points: 1000, from: steps - 2000, to: steps });

const columns = ['step', 'k', 'K', 'R', 'U', 'lr_other', 'loss', 'acc', 'steps_per_s'];
const raw = JSON.stringify(Object.fromEntries(columns.map((name) => [name, Array.from(data.scalars.column(name), (v) => (Number.isFinite(v) ? Number(v.toPrecision(5)) : null))])));
const sample = JSON.stringify(Array.from({ length: 10_000 }, () => Number((random() * 1e-3).toPrecision(5))));
const rawHeatmapBytes = (sample.length / 10_000) * layers * steps;

// ---------------------------------------------------------------------------------------------
// 3. A live run's cost per step: one record into the dashboard's memory (in the controller's process).
const live = new RunData(dir);
live.setMeta(data.meta);
const records = Array.from({ length: 2000 }, (_, t) => JSON.parse(stepLine(t)));
const ingestSteps = Math.min(steps, 100_000);
let t = now();
for (let i = 0; i < ingestSteps; i++) live.add({ ...records[i % records.length], step: i });
const ingestUs = (ms(t) * 1000) / ingestSteps;

// 4. The report of the whole run.
t = now();
const html = reportHtml([data]);
const reportMs = ms(t);
writeFileSync(join(dir, 'report.html'), html);

// ---------------------------------------------------------------------------------------------
// 5. In a browser, when there is one: the report (the page the live dashboard serves, with this data) drawn.
let browser = null;
const chromium = process.env.TRQAT_CHROMIUM ?? '/usr/bin/chromium';
if (existsSync(chromium)) {
  const { chromium: pw } = await import('playwright-core');
  const b = await pw.launch({ executablePath: chromium, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  try {
    const page = await b.newPage({ viewport: { width: 1400, height: 900 } });
    const loadsMs = [];
    const parseMs = [];
    const renderMs = [];
    const redraws = [];
    for (let r = 0; r < Math.max(2, reps); r++) {
      const t0 = Date.now();
      await page.goto(`file://${join(dir, 'report.html')}`);
      await page.waitForFunction(() => Number(document.body.dataset.renders ?? 0) >= 1, null, { timeout: 120_000 });
      loadsMs.push(Date.now() - t0);
      const timing = await page.evaluate(() => ({ parse: performance.getEntriesByType('navigation')[0].domInteractive, render: window.trqat.renderMs }));
      parseMs.push(timing.parse);
      renderMs.push(timing.render);
      // A zoom: every chart and heatmap redrawn for a tenth of the run.
      redraws.push(await page.evaluate(() => {
        const s = window.trqat;
        const t1 = performance.now();
        const max = s.payload.runs[0].series.step.at(-1);
        for (const chart of Object.values(s.charts)) chart.setScale('x', { min: max * 0.45, max: max * 0.55 });
        for (const heatmap of Object.values(s.heatmaps)) heatmap.draw();
        return performance.now() - t1;
      }));
    }
    browser = { loadsMs, parseMs, renderMs, redraws };
  } finally {
    await b.close();
  }
}

// ---------------------------------------------------------------------------------------------
const rows = [
  ['metrics.jsonl', `${steps.toLocaleString('en-US')} steps × ${layers} layers`, `${mib(fileBytes)} MiB`, '', ''],
  ['load: reader (schema, columns, bins)', `${reps} rep(s)`, `${medRange(loads.map((v) => v / 1000), 2)} s`, `${((steps / median(loads)) * 1000).toFixed(0)} lines/s`, `${mib(heapBytes)} MiB held`],
  ['load: bare JSON.parse of every line', `${reps} rep(s)`, `${medRange(bare.map((v) => v / 1000), 2)} s`, `reader / bare = ${(median(loads) / median(bare)).toFixed(2)}`, ''],
  ['view: whole run, 1000 buckets', 'payload + JSON + gzip', `${medRange(full.times, 1)} ms`, `${kib(full.json)} KiB JSON`, `${kib(full.gzip)} KiB gzip`],
  ['view: whole run, series only (most live polls)', 'payload + JSON + gzip', `${medRange(seriesOnly.times, 1)} ms`, `${kib(seriesOnly.json)} KiB JSON`, `${kib(seriesOnly.gzip)} KiB gzip`],
  ['view: zoom to 10% of the run', 'payload + JSON + gzip', `${medRange(zoomed.times, 1)} ms`, `${kib(zoomed.json)} KiB JSON`, `${kib(zoomed.gzip)} KiB gzip`],
  ['view: zoom to the last 2000 steps', 'payload + JSON + gzip', `${medRange(late.times, 1)} ms`, `${kib(late.json)} KiB JSON`, `${kib(late.gzip)} KiB gzip`],
  ['naive: every step of 9 series', 'JSON', '', `${mib(raw.length)} MiB JSON`, `${(raw.length / full.json).toFixed(0)}× the whole-run view`],
  ['naive: every step × layer of the heatmap', 'JSON (estimated per value)', '', `${mib(rawHeatmapBytes)} MiB JSON`, `${(rawHeatmapBytes / full.json).toFixed(0)}× the whole-run view`],
  ['live: one step record into the dashboard', `${ingestSteps.toLocaleString('en-US')} records`, `${ingestUs.toFixed(1)} µs/step`, '', ''],
  ['report.html of the whole run', '', `${reportMs.toFixed(0)} ms`, `${kib(html.length)} KiB`, ''],
];
if (browser) {
  rows.push(['browser: report opened and drawn', `chromium, ${browser.loadsMs.length} loads, as seen by the test driver`, `${medRange(browser.loadsMs, 0)} ms`, '', '']);
  rows.push(['browser: of which HTML parsed', 'domInteractive', `${medRange(browser.parseMs, 0)} ms`, '', '']);
  rows.push(['browser: of which every chart and heatmap drawn', "the page's render()", `${medRange(browser.renderMs, 0)} ms`, '', '']);
  rows.push(['browser: zoom, every chart and heatmap redrawn', '', `${medRange(browser.redraws, 1)} ms`, '', '']);
}
function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
const notes = [
  machineLine(),
  loadNote(),
  `synthetic record: a distance histogram every ${DIAGNOSTICS_EVERY} steps, an evaluation every ${EVAL_EVERY} steps; layers of 2.3K..2.4M weights (${total.toLocaleString('en-US')} in all)`,
  'Figures: median [min–max] over repetitions. "held": heap and array buffers the loaded run keeps (scalars at full resolution, per-layer values in ≤ 1024 step bins).',
  `total ${((Date.now() - started) / 1000).toFixed(0)} s`,
];
const output = table(`Dashboard: ${steps.toLocaleString('en-US')} steps × ${layers} layers (${opts.budget})`, ['what', 'how', 'time', 'size / rate', ''], rows, notes);
process.stdout.write(output);
writeJson(join(dir, 'results.json'), { steps, layers, fileBytes, loads, bare, heapBytes, full, seriesOnly, zoomed, late, rawBytes: raw.length, rawHeatmapBytes, ingestUs, reportMs, reportBytes: html.length, browser });
if (opts.budget === 'tiny') rmSync(metricsPath);
