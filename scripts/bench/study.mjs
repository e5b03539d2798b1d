// Reproduction study: TR scheduling against LR scheduling on Fashion-MNIST with ResNet-20.
//
//   0. preflight: every config this study will run is resolved first; a key or value the controller
//      does not know stops the study before anything runs (exit 2), naming the key and what needs it
//      (--skip-missing drops those runs instead, with a note in the tables)
//   1. one full-precision ResNet-20 trained by trqat itself (mode=baseline, W32A32)
//   2. the grid: W2A2 and W1A1 × SGD and Adam × LR-scheduled (mode=baseline) and TR-scheduled
//      (mode=tr) × seeds, all from that FP model (model.init_checkpoint), the same number of steps
//   3. sweeps around W2A2/SGD under TR: lambda, eta, m, the TALR rule, the number of steps (with the
//      LR-scheduled baseline at each length)
//   4. tables (top-1 mean ± std, tracking error of K against R, late-training TR) and plots (SVG +
//      CSV): K against R, U, and the measured TR under plain LR scheduling
//
// Usage: node scripts/bench/study.mjs --budget tiny|quick|full [--jobs N] [--threads N] [--out DIR]
//        [--skip-missing] [--data-root DIR] [--plan (print the number of runs and steps, run nothing)]
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { importDist, machineLine, mean, meanStd, outDir, parseArgs, runNodeJson, table, writeJson } from './lib.mjs';
import { linePlot } from './svg.mjs';

const opts = parseArgs(undefined, { budget: 'quick' });
const budget = opts.budget;
const B = {
  tiny: { fpSteps: 8, steps: 6, seeds: [0], bits: [2, 1], optimizers: ['sgd'], batch: 32, trainSubset: 512, testSubset: 256, sweep: 'tiny', jobs: 2, threads: 1 },
  quick: { fpSteps: 469, steps: 200, seeds: [0, 1, 2], bits: [2, 1], optimizers: ['sgd', 'adam'], batch: 128, trainSubset: null, testSubset: null, sweep: 'quick', jobs: 2, threads: 1 },
  full: { fpSteps: 9380, steps: 4690, seeds: [0, 1, 2, 3, 4], bits: [2, 1], optimizers: ['sgd', 'adam'], batch: 128, trainSubset: null, testSubset: null, sweep: 'full', jobs: 1, threads: null },
}[budget];
const jobs = Number(opts.jobs ?? B.jobs);
const threads = opts.threads ? Number(opts.threads) : (B.threads ?? cpus().length);
const dir = outDir(opts, `study-${budget}`);
const { loadConfig } = await importDist();

// ---------------------------------------------------------------------------------------------
// the runs

const common = [
  `out_dir=${join(dir, 'runs')}`,
  'model.name=resnet20',
  'data.name=fashion-mnist',
  ...(opts['data-root'] ? [`data.root=${opts['data-root']}`] : []),
  `data.batch_size=${B.batch}`,
  ...(B.trainSubset ? [`data.train_subset=${B.trainSubset}`] : []),
  ...(B.testSubset ? [`data.test_subset=${B.testSubset}`] : []),
  'train.eval_every=0',
  'train.checkpoint_every=0',
  'train.keep_checkpoints=1',
  'worker.device=auto',
  `worker.threads=${threads}`,
];
const FP = { id: 'fp', phase: 'fp', overrides: [...common, 'name=fp', 'mode=baseline', 'quant.weight_bits=32', 'quant.act_bits=32', 'optimizer.name=sgd', `train.steps=${B.fpSteps}`, 'seed=0'], needs: 'the full-precision start (quant.weight_bits/act_bits=32)' };

/** A QAT run from the FP model. */
function qat({ bits, opt = 'sgd', mode, seed = 0, steps = B.steps, extra = [], phase, label }) {
  const id = [phase, `w${bits}a${bits}`, opt, mode, `s${seed}`, `t${steps}`, ...extra.map((e) => e.replace(/[^A-Za-z0-9.]+/g, '_'))].join('-');
  return {
    id,
    phase,
    label,
    bits,
    opt,
    mode,
    seed,
    steps,
    extra,
    overrides: [...common, `name=${id}`, `mode=${mode}`, `optimizer.name=${opt}`, `quant.weight_bits=${bits}`, `quant.act_bits=${bits}`, `train.steps=${steps}`, `seed=${seed}`, 'tr.auto=true', ...extra],
    needs: phase === 'grid' ? 'the TR-vs-LR grid' : `the ${label?.split('=')[0]} sweep`,
  };
}

const runs = [];
for (const bits of B.bits) for (const opt of B.optimizers) for (const seed of B.seeds) for (const mode of ['baseline', 'tr']) runs.push(qat({ bits, opt, mode, seed, phase: 'grid' }));

const sweepSeeds = budget === 'full' ? B.seeds.slice(0, 3) : [0];
const S = B.steps;
const sweeps = {
  tiny: { lambda: [5e-3], eta: [], momentum: [], rule: ['multiplicative'], steps: [S * 2] },
  quick: { lambda: [5e-3, 5e-4, 1e-4], eta: [0.01, 1], momentum: [0.99], rule: ['multiplicative', 'momentum_multiplicative'], steps: [Math.round(S / 2), S * 2] },
  full: { lambda: [5e-3, 1e-3, 5e-4, 1e-4], eta: [0.01, 0.1, 1, 10], momentum: [0.9, 0.99, 0.999], rule: ['additive', 'multiplicative', 'momentum_multiplicative'], steps: [Math.round(S / 4), Math.round(S / 2), S * 2] },
}[B.sweep];
for (const seed of sweepSeeds) {
  for (const v of sweeps.lambda) runs.push(qat({ bits: 2, mode: 'tr', seed, phase: 'sweep', label: `lambda=${v}`, extra: [`tr.lambda=${v}`] }));
  for (const v of sweeps.eta) runs.push(qat({ bits: 2, mode: 'tr', seed, phase: 'sweep', label: `eta=${v}`, extra: [`tr.talr.eta=${v}`] }));
  for (const v of sweeps.momentum) runs.push(qat({ bits: 2, mode: 'tr', seed, phase: 'sweep', label: `m=${v}`, extra: [`tr.momentum=${v}`] }));
  for (const v of sweeps.rule) runs.push(qat({ bits: 2, mode: 'tr', seed, phase: 'sweep', label: `rule=${v}`, extra: [`tr.talr.rule=${v}`] }));
  for (const v of sweeps.steps) for (const mode of ['baseline', 'tr']) runs.push(qat({ bits: 2, mode, seed, steps: v, phase: 'sweep', label: `steps=${v}` }));
}
// sweep points identical to a grid run (same settings) are not run twice
const seen = new Set();
const unique = runs.filter((run) => {
  const key = JSON.stringify([...run.overrides].filter((o) => !o.startsWith('name=')).sort());
  if (seen.has(key)) return false;
  seen.add(key);
  run.key = key;
  return true;
});
const keyOf = (run) => JSON.stringify([...run.overrides].filter((o) => !o.startsWith('name=')).sort());

// ---------------------------------------------------------------------------------------------
// 0. preflight

const notes = [];
const problems = [];
for (const run of [FP, ...unique]) {
  const probe = run === FP ? run.overrides : [...run.overrides, `model.init_checkpoint=${join(dir, 'fp.pt')}`];
  try {
    loadConfig(null, probe);
  } catch (error) {
    problems.push({ run, message: error.message.replace(/\s+/g, ' ').trim() });
  }
}
if (problems.length > 0) {
  const byMessage = new Map();
  for (const p of problems) byMessage.set(p.message, [...(byMessage.get(p.message) ?? []), p.run]);
  const lines = [...byMessage].map(([message, rs]) => `  - ${message}\n    needed by ${[...new Set(rs.map((r) => r.needs))].join(', ')} (${rs.length} run(s), e.g. ${rs[0].id})`);
  if (!opts['skip-missing']) {
    console.error(`study: the controller refuses ${problems.length} of the study's configs:\n${lines.join('\n')}\n` + 'Update trqat (npm run build) or pass --skip-missing to run the rest.');
    process.exit(2);
  }
  for (const [message, rs] of byMessage) notes.push(`skipped ${rs.length} run(s) (${[...new Set(rs.map((r) => r.needs))].join(', ')}): ${message}`);
}
const refused = new Set(problems.map((p) => p.run));
if (opts.plan) {
  const qatRuns = unique.filter((r) => !refused.has(r));
  const steps = qatRuns.reduce((n, r) => n + r.steps, 0);
  console.log(`study (${budget}): 1 full-precision run of ${B.fpSteps} steps + ${qatRuns.length} QAT runs, ${steps.toLocaleString('en-US')} QAT steps of batch ${B.batch}`);
  process.exit(0);
}
const fpOk = !refused.has(FP);

// ---------------------------------------------------------------------------------------------
// 1.-3. run

function readMetrics(runDir) {
  const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean);
  return lines.map((l) => JSON.parse(l)).filter((r) => r.type === 'step');
}

/** Tracking error as the controller defines it, for runs whose summary lacks it: mean |K-R|/R(0) after 10% of the run. */
function trackingError(steps) {
  const r0 = steps[0]?.R;
  if (!r0) return null;
  const tail = steps.slice(Math.floor(steps.length / 10));
  return mean(tail.map((s) => Math.abs(s.K - s.R) / r0));
}

async function execute(run, extra = []) {
  const started = Date.now();
  try {
    const res = await runNodeJson('trqat_run.mjs', ['--warmup', '1', '--', ...run.overrides, ...extra]);
    const summary = JSON.parse(readFileSync(join(res.run_dir, 'summary.json'), 'utf8'));
    const steps = readMetrics(res.run_dir);
    const late = steps.slice(Math.floor(steps.length * 0.8)).filter((s) => s.k != null);
    run.result = {
      run_dir: res.run_dir,
      top1: summary.final_top1,
      tracking_error: summary.tracking_error ?? (run.mode === 'tr' ? trackingError(steps) : null),
      tracking_source: summary.tracking_error != null ? 'summary' : 'script',
      late_k: late.length > 0 ? mean(late.map((s) => s.k)) : null,
      late_R: late.length > 0 && late[0].R != null ? mean(late.map((s) => s.R)) : null,
      seconds: (Date.now() - started) / 1000,
    };
    process.stderr.write(`study: ${run.id}: top-1 ${summary.final_top1?.toFixed(2)}% (${run.result.seconds.toFixed(0)} s)\n`);
  } catch (error) {
    run.error = error.message.split('\n').slice(0, 6).join(' ').slice(0, 300);
    process.stderr.write(`study: ${run.id} failed: ${run.error}\n`);
  }
}

async function pool(items, n, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

const t0 = Date.now();
let init = [];
if (fpOk) {
  process.stderr.write(`study: full-precision model, ${B.fpSteps} steps\n`);
  await execute(FP, budget === 'tiny' ? [] : [`worker.threads=${cpus().length}`]);
  if (!FP.result) {
    console.error(`study: the full-precision run failed: ${FP.error}`);
    process.exit(1);
  }
  const ckDir = join(FP.result.run_dir, 'checkpoints');
  const latest = JSON.parse(readFileSync(join(ckDir, 'latest.json'), 'utf8'));
  const fpPath = join(ckDir, latest.path, 'worker.pt');
  if (!existsSync(fpPath)) throw new Error(`study: ${fpPath} is missing`);
  init = [`model.init_checkpoint=${fpPath}`];
} else {
  notes.push('QAT runs start from random initialisation, not from a full-precision model (see the skipped runs).');
}
const todo = unique.filter((run) => !refused.has(run));
process.stderr.write(`study: ${todo.length} QAT runs, ${jobs} at a time, ${threads} thread(s) each\n`);
await pool(todo, jobs, (run) => execute(run, init));
const elapsed = (Date.now() - t0) / 1000;

// ---------------------------------------------------------------------------------------------
// 4. tables

const resultOf = (spec) => unique.find((r) => r.key === keyOf(spec));
const fmtTop = (values) => (values.length ? meanStd(values, 2) : 'n/a');
const ok = (list) => list.map(resultOf).filter((r) => r?.result);

let text = `## Reproduction study (${budget}): TR vs LR scheduling, Fashion-MNIST, ResNet-20\n\n`;
text += `- ${machineLine()}\n- ${todo.length + (fpOk ? 1 : 0)} runs in ${(elapsed / 60).toFixed(1)} min (${jobs} at a time, ${threads} thread(s) each); every QAT run: ${B.steps} steps of batch ${B.batch}${B.trainSubset ? ` on the first ${B.trainSubset} training images` : ''}, test on ${B.testSubset ?? 'all 10,000'} test images, tr.auto=true (eta and m from the run length) unless swept.\n`;
if (FP.result) text += `- full-precision start: ${B.fpSteps} steps of SGD, top-1 ${FP.result.top1?.toFixed(2)}% (${FP.result.run_dir}).\n`;
for (const note of notes) text += `- ${note}\n`;
text += '\n';

const gridRows = [];
for (const bits of B.bits) {
  for (const opt of B.optimizers) {
    const base = ok(B.seeds.map((seed) => qat({ bits, opt, mode: 'baseline', seed, phase: 'grid' })));
    const tr = ok(B.seeds.map((seed) => qat({ bits, opt, mode: 'tr', seed, phase: 'grid' })));
    const bt = base.map((r) => r.result.top1);
    const tt = tr.map((r) => r.result.top1);
    const delta = bt.length && tt.length ? (mean(tt) - mean(bt)).toFixed(2) : 'n/a';
    gridRows.push([
      `W${bits}A${bits}`,
      `${opt.toUpperCase()} → ${opt.toUpperCase()}T`,
      `${fmtTop(bt)} (n=${bt.length})`,
      `${fmtTop(tt)} (n=${tt.length})`,
      delta,
      tr.length ? meanStd(tr.map((r) => r.result.tracking_error ?? Number.NaN), 3) : 'n/a',
      base.length ? mean(base.map((r) => r.result.late_k ?? Number.NaN)).toExponential(2) : 'n/a',
      tr.length ? `${mean(tr.map((r) => r.result.late_k ?? Number.NaN)).toExponential(2)} (R ${mean(tr.map((r) => r.result.late_R ?? Number.NaN)).toExponential(2)})` : 'n/a',
    ]);
  }
}
text += table(
  'TR scheduling against LR scheduling (top-1 %, mean ± std over seeds)',
  ['bits', 'optimizer', 'LR-scheduled top-1', 'TR-scheduled top-1', 'Δ (TR − LR)', 'tracking error (TR)', 'late TR, LR-scheduled', 'late TR, TR-scheduled'],
  gridRows,
  ['tracking error = mean |K − R| / R(0) after a settling window (the controller\'s summary.json). late TR = mean measured k over the last 20% of steps.'],
);

const sweepRows = [];
for (const [param, values] of Object.entries(sweeps)) {
  for (const v of values) {
    const label = `${param === 'momentum' ? 'm' : param}=${v}`;
    const specs = sweepSeeds.map((seed) => {
      const spec = qat({ bits: 2, mode: 'tr', seed, steps: param === 'steps' ? v : S, phase: 'sweep', label, extra: param === 'steps' ? [] : [`tr.${{ lambda: 'lambda', eta: 'talr.eta', momentum: 'momentum', rule: 'talr.rule' }[param]}=${v}`] });
      return spec;
    });
    const tr = ok(specs);
    const base = param === 'steps' ? ok(sweepSeeds.map((seed) => qat({ bits: 2, mode: 'baseline', seed, steps: v, phase: 'sweep', label }))) : ok(sweepSeeds.map((seed) => qat({ bits: 2, opt: 'sgd', mode: 'baseline', seed, phase: 'grid' })));
    const failed = specs.map(resultOf).filter((r) => r?.error);
    sweepRows.push([
      label,
      tr.length ? fmtTop(tr.map((r) => r.result.top1)) : failed.length ? `failed: ${failed[0].error.slice(0, 80)}` : 'skipped',
      base.length ? fmtTop(base.map((r) => r.result.top1)) : 'n/a',
      tr.length && base.length ? (mean(tr.map((r) => r.result.top1)) - mean(base.map((r) => r.result.top1))).toFixed(2) : 'n/a',
      tr.length ? meanStd(tr.map((r) => r.result.tracking_error ?? Number.NaN), 3) : 'n/a',
      tr.length ? mean(tr.map((r) => r.result.late_k ?? Number.NaN)).toExponential(2) : 'n/a',
    ]);
  }
}
sweepRows.push(['default (grid: tr.auto, lambda 1e-3, additive)', fmtTop(ok(sweepSeeds.map((seed) => qat({ bits: 2, mode: 'tr', seed, phase: 'grid' }))).map((r) => r.result.top1)), '', '', '', '']);
text += '\n';
text += table(
  `Sweeps around W2A2 / SGDT (${sweepSeeds.length} seed(s) each; one setting changed at a time)`,
  ['setting', 'TR-scheduled top-1', 'LR-scheduled top-1 (same steps)', 'Δ', 'tracking error', 'late TR'],
  sweepRows,
  ['eta and m not swept keep tr.auto; eta in absolute units (U(0) = 0.1 for SGD).'],
);

// ---------------------------------------------------------------------------------------------
// plots

const plotRun = resultOf(qat({ bits: 2, opt: 'sgd', mode: 'tr', seed: 0, phase: 'grid' }));
const baseRun = resultOf(qat({ bits: 2, opt: 'sgd', mode: 'baseline', seed: 0, phase: 'grid' }));
const plots = [];
if (plotRun?.result && baseRun?.result) {
  const tr = readMetrics(plotRun.result.run_dir);
  const lr = readMetrics(baseRun.result.run_dir);
  const smooth = (ys, w = Math.max(1, Math.round(ys.length / 50))) => ys.map((_, i) => {
    const win = ys.slice(Math.max(0, i - w + 1), i + 1).filter((v) => v != null);
    return win.length ? mean(win) : null;
  });
  const xs = tr.map((s) => s.step);
  const write = (name, svg) => {
    writeFileSync(join(dir, name), svg);
    plots.push(join(dir, name));
  };
  write('k-vs-r.svg', linePlot({ title: 'TR scheduling (W2A2, SGDT): running TR K against target R', ylabel: 'transition rate', series: [
    { name: 'R (target)', xs, ys: tr.map((s) => s.R) },
    { name: 'K (running)', xs, ys: tr.map((s) => s.K) },
    { name: 'k (measured)', xs, ys: smooth(tr.map((s) => s.k)), dash: true },
  ] }));
  write('u.svg', linePlot({ title: 'TALR U(t) under TR scheduling (W2A2, SGDT)', ylabel: 'U (LR of quantized weights)', series: [
    { name: 'U', xs, ys: tr.map((s) => s.U) },
    { name: 'LR (other params)', xs, ys: tr.map((s) => s.lr_other), dash: true },
  ] }));
  write('tr-under-lr.svg', linePlot({ title: 'Measured TR: LR scheduling (SGD) vs TR scheduling (SGDT), W2A2', ylabel: 'transition rate k (smoothed)', logY: true, series: [
    { name: 'k, LR-scheduled', xs: lr.map((s) => s.step), ys: smooth(lr.map((s) => s.k)) },
    { name: 'k, TR-scheduled', xs, ys: smooth(tr.map((s) => s.k)) },
    { name: 'R (TR target)', xs, ys: tr.map((s) => s.R), dash: true },
  ] }));
  write('lr-vs-tr-lr.svg', linePlot({ title: 'LR of the quantized weights: cosine LR vs TALR', ylabel: 'learning rate', series: [
    { name: 'LR-scheduled', xs: lr.map((s) => s.step), ys: lr.map((s) => s.lr_quant) },
    { name: 'U (TR-scheduled)', xs, ys: tr.map((s) => s.U) },
  ] }));
  const csv = ['step,R,K_tr,k_tr,U,lr_other,k_lr,K_lr,lr_lr'];
  for (let i = 0; i < Math.max(tr.length, lr.length); i++) {
    const a = tr[i] ?? {};
    const b = lr[i] ?? {};
    csv.push([a.step ?? b.step, a.R, a.K, a.k, a.U, a.lr_other, b.k, b.K, b.lr_quant].map((v) => (v == null ? '' : v)).join(','));
  }
  writeFileSync(join(dir, 'curves.csv'), `${csv.join('\n')}\n`);
  plots.push(join(dir, 'curves.csv'));
}
text += `\nPlots: ${plots.length ? plots.join(', ') : 'none (the W2A2 SGD seed-0 runs are missing)'}\n`;
console.log(text);
writeFileSync(join(dir, 'study.md'), text);
writeJson(join(dir, 'results.json'), {
  budget,
  elapsed_s: elapsed,
  fp: FP.result ?? null,
  runs: unique.map(({ id, phase, label, bits, opt, mode, seed, steps, extra, result, error }) => ({ id, phase, label, bits, opt, mode, seed, steps, extra, result, error })),
  notes,
});
const failedRuns = todo.filter((r) => r.error);
if (failedRuns.length > 0) {
  console.error(`study: ${failedRuns.length} run(s) failed; see the tables`);
  process.exitCode = 1;
}
