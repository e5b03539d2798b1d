// Reproduction study: TR scheduling against LR scheduling on Fashion-MNIST with ResNet-20.
//
//   0. preflight: every config this study will run is resolved first; a key or value the controller
//      does not know stops the study before anything runs (exit 2), naming the key and what needs it
//      (--skip-missing drops those runs instead, with a note in the tables)
//   1. one full-precision ResNet-20 trained by trqat itself (mode=baseline, W32A32)
//   2. the grid: settings (bits × optimizer) × arms × seeds, all from that FP model
//      (model.init_checkpoint), each arm the same number of epochs (or steps, on the tiny budget).
//      Arms: LR scheduling (mode=baseline), the paper-text TR controller, the released-code preset
//      (tr.preset=released), the LR-scheduled run with the released code's other settings, and
//      (quick) the tr.auto controller
//   3. (tiny, quick) sweeps around W2A2/SGD under TR: lambda, eta, m, the TALR rule, the run length
//   4. tables (top-1 mean ± std, Welch's t-tests of each TR arm against LR and of the two TR controllers, tracking error of K
//      against R, late-phase transition rate) and plots per setting (SVG): K against R, U, measured k
//
// Resumable: each finished run leaves results/<id>.json in the output folder, and a run whose
// result exists is not run again; a run stopped midway continues from its latest checkpoint (every
// 1000 steps). The tables and plots are rewritten after every run from all the results there. With --commit, each run's result and the rewritten report are committed at once
// (`git commit -- <those paths>`, nothing else; retried while another git holds the index lock).
//
// Usage: node scripts/bench/study.mjs --budget tiny|quick|full [options] (--help: the options)
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { importDist, machineLine, mean, meanStd, outDir, parseArgs, positiveInt, readJson, ROOT, runNodeJson, table, welch, writeJson } from './lib.mjs';
import { linePlot } from './svg.mjs';

const opts = parseArgs('study.mjs', 'Reproduction study: TR scheduling against LR scheduling on Fashion-MNIST with ResNet-20', (cli) =>
  cli
    .option('--jobs <n>', 'runs at a time (default by budget: 2, 2, 1)', positiveInt)
    .option('--threads <n>', 'CPU threads per run (default: 1)', positiveInt)
    .option('--device <device>', 'worker.device of every run: auto, cpu or cuda (default: auto)')
    .option('--data-root <dir>', 'data.root of every run (default: the Fashion-MNIST of Debian)')
    .option('--settings <list>', 'only these settings, comma-separated (e.g. w2a2-sgd,w1a1-sgd; default: all of the budget)')
    .option('--skip-missing', 'drop the runs whose config the controller refuses, with a note, instead of stopping')
    .option('--commit', 'commit each finished run\'s results (git) as it ends')
    .option('--plan', 'print the number of runs and steps, and run nothing'),
);
const budget = opts.budget;
const B = {
  tiny: {
    fp: { steps: 8 }, length: { steps: 6 }, seeds: [0], batch: 32, trainSubset: 512, testSubset: 256, jobs: 2, threads: 1,
    settings: [[2, 'sgd']], arms: ['lr', 'tr', 'released'], sweep: 'tiny',
  },
  quick: {
    fp: { steps: 469 }, length: { steps: 200 }, seeds: [0, 1, 2], batch: 128, trainSubset: null, testSubset: null, jobs: 2, threads: 1,
    settings: [[2, 'sgd'], [2, 'adam'], [1, 'sgd'], [1, 'adam']], arms: ['lr', 'tr-auto'], sweep: 'quick',
  },
  // The issue-9 study: QAT of 10 epochs from a converged FP model, three settings, three seeds.
  full: {
    fp: { epochs: 30 }, length: { epochs: 10 }, seeds: [0, 1, 2], batch: null, trainSubset: null, testSubset: null, jobs: 1, threads: 1,
    settings: [[2, 'sgd'], [2, 'adam'], [1, 'sgd']], arms: ['lr', 'tr', 'released', 'lr-released'], sweep: null,
  },
}[budget];
if (opts.settings) {
  const wanted = opts.settings.split(',').map((x) => x.trim());
  const known = B.settings.map(([bits, opt]) => `w${bits}a${bits}-${opt}`);
  const unknown = wanted.filter((w) => !known.includes(w));
  if (unknown.length) {
    console.error(`study: unknown setting(s) ${unknown.join(', ')} for --budget ${budget}; known: ${known.join(', ')}`);
    process.exit(2);
  }
}
/** --settings: the runs this invocation may start (the report still covers every setting's results). */
const selected = (run) => !opts.settings || run === FP || run.phase !== 'grid' || opts.settings.split(',').map((x) => x.trim()).includes(`w${run.bits}a${run.bits}-${run.opt}`);
const jobs = Number(opts.jobs ?? B.jobs);
const threads = opts.threads ? Number(opts.threads) : (B.threads ?? cpus().length);
const dir = outDir(opts, `study-${budget}`);
const resultsDir = join(dir, 'results');
mkdirSync(resultsDir, { recursive: true });
const { loadConfig } = await importDist();

// ---------------------------------------------------------------------------------------------
// the runs

/** What each arm adds to the common settings (the arm's label is what the tables print). */
const ARMS = {
  lr: { label: 'LR scheduling', mode: 'baseline', overrides: [] },
  tr: { label: 'TR, paper text', mode: 'tr', overrides: [] },
  'tr-auto': { label: 'TR, tr.auto', mode: 'tr', overrides: ['tr.auto=true'] },
  released: { label: 'TR, released code', mode: 'tr', overrides: ['tr.preset=released'] },
  'lr-released': { label: 'LR, released settings', mode: 'baseline', overrides: ['tr.preset=released'] },
};
/** The pairs of arms tested (Welch's t-test on the final top-1): each TR arm against LR, and the two
 * controllers against each other (the README's rule for the default preset asks that one). */
const COMPARISONS = [
  ['tr', 'lr'],
  ['tr-auto', 'lr'],
  ['released', 'lr'],
  ['released', 'lr-released'],
  ['released', 'tr'],
].filter(([a, b]) => B.arms.includes(a) && B.arms.includes(b));

const lengthOverrides = (length) => (length.steps ? [`train.steps=${length.steps}`] : [`train.epochs=${length.epochs}`]);
const lengthLabel = (length) => (length.steps ? `${length.steps} steps` : `${length.epochs} epochs`);
const common = [
  'model.name=resnet20',
  'data.name=fashion-mnist',
  ...(opts.dataRoot ? [`data.root=${opts.dataRoot}`] : []),
  ...(B.batch ? [`data.batch_size=${B.batch}`] : []),
  ...(B.trainSubset ? [`data.train_subset=${B.trainSubset}`] : []),
  ...(B.testSubset ? [`data.test_subset=${B.testSubset}`] : []),
  'train.eval_every=0',
  'train.checkpoint_every=1000', // a stopped study continues a run from here
  'train.keep_checkpoints=1',
  'train.log_every=100',
  `worker.device=${opts.device ?? 'auto'}`,
  `worker.threads=${threads}`,
];
const runsDir = join(dir, 'runs'); // git-ignored: run folders and checkpoints
const fpWeights = join(dir, 'fp.pt'); // committed: the start of every QAT run
const FP = {
  id: 'fp',
  overrides: [...common, `out_dir=${runsDir}`, 'name=fp', 'mode=baseline', 'quant.weight_bits=32', 'quant.act_bits=32', 'optimizer.name=sgd', ...lengthOverrides(B.fp), 'seed=0'],
  needs: 'the full-precision start (quant.weight_bits/act_bits=32)',
};

/** A QAT run from the FP model. */
function qat({ bits, opt = 'sgd', arm, seed = 0, length = B.length, extra = [], phase = 'grid', label }) {
  const { mode, overrides } = ARMS[arm];
  const id = [phase, `w${bits}a${bits}`, opt, arm, `s${seed}`, length.steps ? `t${length.steps}` : `e${length.epochs}`, ...extra.map((e) => e.replace(/[^A-Za-z0-9.]+/g, '_'))].join('-');
  return {
    id,
    phase,
    label,
    bits,
    opt,
    arm,
    mode,
    seed,
    length,
    extra,
    overrides: [...common, `out_dir=${runsDir}`, `name=${id}`, `mode=${mode}`, `optimizer.name=${opt}`, `quant.weight_bits=${bits}`, `quant.act_bits=${bits}`, ...lengthOverrides(length), `seed=${seed}`, ...overrides, ...extra],
    needs: phase === 'grid' ? `the ${ARMS[arm].label} arm` : `the ${label?.split('=')[0]} sweep`,
  };
}

// Seed-major order, so that a stopped study has whole seeds rather than whole settings; the extra
// LR arm with the released settings comes after the arms the main comparison needs.
const runs = [];
const extraArms = ['lr-released'];
for (const arms of [B.arms.filter((a) => !extraArms.includes(a)), B.arms.filter((a) => extraArms.includes(a))]) {
  for (const seed of B.seeds) for (const [bits, opt] of B.settings) for (const arm of arms) runs.push(qat({ bits, opt, arm, seed }));
}

const sweepSeeds = budget === 'quick' ? [0] : B.seeds.slice(0, 1);
const S = B.length.steps;
const sweeps = {
  tiny: { lambda: [5e-3], eta: [], momentum: [], rule: [], steps: [S * 2] },
  quick: { lambda: [5e-3, 5e-4, 1e-4], eta: [0.01, 1], momentum: [0.99], rule: ['multiplicative', 'momentum_multiplicative'], steps: [Math.round(S / 2), S * 2] },
}[B.sweep] ?? { lambda: [], eta: [], momentum: [], rule: [], steps: [] };
const sweepArm = B.arms.includes('tr-auto') ? 'tr-auto' : 'tr';
const sweepKey = { lambda: 'tr.lambda', eta: 'tr.talr.eta', momentum: 'tr.momentum', rule: 'tr.talr.rule' };
const sweepSpec = (param, v, seed, arm = sweepArm) =>
  param === 'steps'
    ? qat({ bits: 2, arm, seed, length: { steps: v }, phase: 'sweep', label: `steps=${v}` })
    : qat({ bits: 2, arm, seed, phase: 'sweep', label: `${param === 'momentum' ? 'm' : param}=${v}`, extra: [`${sweepKey[param]}=${v}`] });
for (const seed of sweepSeeds) {
  for (const [param, values] of Object.entries(sweeps)) {
    for (const v of values) {
      runs.push(sweepSpec(param, v, seed));
      if (param === 'steps') runs.push(sweepSpec(param, v, seed, 'lr'));
    }
  }
}
// sweep points identical to a grid run (same settings) are not run twice
const keyOf = (run) => JSON.stringify([...run.overrides].filter((o) => !o.startsWith('name=')).sort());
const byKey = new Map();
for (const run of runs) if (!byKey.has(keyOf(run))) byKey.set(keyOf(run), run);
const unique = [...byKey.values()];

// ---------------------------------------------------------------------------------------------
// 0. preflight

const notes = [];
const problems = [];
for (const run of [FP, ...unique]) {
  const probe = run === FP ? run.overrides : [...run.overrides, `model.init_checkpoint=${fpWeights}`];
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
  if (!opts.skipMissing) {
    console.error(`study: the controller refuses ${problems.length} of the study's configs:\n${lines.join('\n')}\n` + 'Update trqat (npm run build) or pass --skip-missing to run the rest.');
    process.exit(2);
  }
  for (const [message, rs] of byMessage) notes.push(`skipped ${rs.length} run(s) (${[...new Set(rs.map((r) => r.needs))].join(', ')}): ${message}`);
}
const refused = new Set(problems.map((p) => p.run));
if (opts.plan) {
  const qatRuns = unique.filter((r) => !refused.has(r));
  const done = qatRuns.filter((r) => existsSync(resultPath(r))).length;
  console.log(`study (${budget}): 1 full-precision run of ${lengthLabel(B.fp)} + ${qatRuns.length} QAT runs of ${lengthLabel(B.length)} (${done} done)`);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// 1.-3. run, keeping one result file per run

function resultPath(run) {
  return join(resultsDir, `${run.id}.json`);
}

function readMetrics(runDir) {
  const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean);
  return lines.map((l) => JSON.parse(l)).filter((r) => r.type === 'step');
}

/** At most `n` points of a curve: means over equal windows of steps (k is noisy, the rest smooth). */
function downsample(steps, n = 200) {
  const w = Math.max(1, Math.ceil(steps.length / n));
  const pick = (key) => {
    const out = [];
    for (let i = 0; i < steps.length; i += w) {
      const win = steps.slice(i, i + w).map((s) => (key === 'lr_quant' && Array.isArray(s.lr_quant) ? s.U : s[key])).filter((v) => v != null);
      out.push(win.length ? mean(win) : null);
    }
    return out;
  };
  return { step: pick('step'), R: pick('R'), K: pick('K'), k: pick('k'), U: pick('U'), lr_quant: pick('lr_quant') };
}

/** The numbers the tables need, from a finished run folder. */
function summarize(run, runDir, seconds) {
  const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'));
  const config = JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8'));
  const info = readJson(join(runDir, 'run.json')); // where it ran: results from CPUs and GPUs are told apart
  const steps = readMetrics(runDir);
  // late phase: the last 20% of the run (oscillation: transitions that keep happening at a small LR)
  const late = steps.slice(Math.floor(steps.length * 0.8)).filter((s) => s.k != null);
  return {
    id: run.id,
    phase: run.phase,
    label: run.label ?? null,
    bits: run.bits,
    opt: run.opt,
    arm: run.arm,
    seed: run.seed,
    overrides: run.overrides.filter((o) => !o.startsWith('out_dir=') && !o.startsWith('model.init_checkpoint=')),
    top1: summary.final_top1,
    final_loss: summary.final_loss,
    tracking_error: summary.tracking_error,
    late_k: late.length > 0 ? mean(late.map((s) => s.k)) : null,
    late_R: late.length > 0 && late[0].R != null ? mean(late.map((s) => s.R)) : null,
    steps: steps.length,
    batch: config.data.batch_size,
    seconds,
    device: info.ranks?.[0]?.device_name ? `${info.device} (${info.ranks[0].device_name})` : info.device ?? null,
    torch: info.ranks?.[0]?.torch_version ?? null,
    run_dir: relative(dir, runDir), // relative to the study folder: results carry no machine paths
    curves: downsample(steps),
  };
}

/** The run folder of a stopped earlier attempt at this run that has a checkpoint to continue from. */
function unfinished(run) {
  if (!existsSync(runsDir)) return null;
  const attempts = readdirSync(runsDir).filter((d) => d.startsWith(`${run.id}-`) && /^\d{8}-\d{6}$/.test(d.slice(run.id.length + 1)));
  for (const d of attempts.sort().reverse()) {
    try {
      const info = readJson(join(runsDir, d, 'run.json'));
      if (info.status !== 'completed' && info.checkpoint_step > 0) return join(runsDir, d);
    } catch {
      // no run.json yet: an attempt that never started
    }
  }
  return null;
}

async function execute(run, extra = []) {
  const started = Date.now();
  try {
    const stopped = unfinished(run);
    if (stopped) process.stderr.write(`study: ${run.id}: continuing ${relative(ROOT, stopped)}\n`);
    const res = await runNodeJson('trqat_run.mjs', ['--warmup', '1', ...(stopped ? ['--resume', stopped, '--'] : ['--', ...run.overrides, ...extra])]);
    const result = summarize(run, res.run_dir, (Date.now() - started) / 1000);
    if (run === FP) {
      // the FP weights are kept beside the results (a few MB), so every machine starts from the same model
      const ckDir = join(res.run_dir, 'checkpoints');
      copyFileSync(join(ckDir, readJson(join(ckDir, 'latest.json')).path, 'worker.pt'), fpWeights);
      result.checkpoint = relative(dir, fpWeights); // relative to the study folder, wherever that is
    }
    writeJson(resultPath(run), result);
    process.stderr.write(`study: ${run.id}: top-1 ${result.top1?.toFixed(2)}% (${result.seconds.toFixed(0)} s)\n`);
    report();
    if (opts.commit) commit(run);
  } catch (error) {
    run.error = error.message.split('\n').slice(0, 6).join(' ').slice(0, 300);
    process.stderr.write(`study: ${run.id} failed: ${run.error}\n`);
  }
}

/** Commits this run's result and the rewritten report, nothing else; waits out another git's index lock. */
function commit(run) {
  const paths = [resultPath(run), ...(run === FP ? [fpWeights] : []), ...reportFiles].filter(existsSync).map((p) => relative(ROOT, p));
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync('git', ['add', '--', ...paths], { cwd: ROOT, stdio: 'pipe' });
      execFileSync('git', ['commit', '-q', '-m', `study (${budget}): ${run.id}`, '--', ...paths], { cwd: ROOT, stdio: 'pipe' });
      return;
    } catch (error) {
      const text = `${error.stderr ?? ''}${error.message}`;
      if (/index\.lock/.test(text) && attempt < 30) {
        execFileSync('sleep', ['2']);
        continue;
      }
      process.stderr.write(`study: could not commit ${run.id}: ${text.split('\n').slice(0, 3).join(' ')}\n`);
      return;
    }
  }
}

async function pool(items, n, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// 4. tables and plots, from every result file there (rewritten after each run)

const reportFiles = [];
const results = () =>
  new Map(
    readdirSync(resultsDir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => {
        const r = readJson(join(resultsDir, f));
        return [r.id, r];
      }),
  );
const SETTINGS = B.settings.map(([bits, opt]) => ({ bits, opt, name: `W${bits}A${bits} ${opt === 'sgd' ? 'SGD' : 'Adam'}`, file: `w${bits}a${bits}-${opt}` }));

function report() {
  const all = results();
  const of = (spec) => all.get(spec.id);
  const ok = (specs) => specs.map(of).filter(Boolean);
  const top = (rs) => rs.map((r) => r.top1);
  const fp = all.get('fp');
  const done = unique.filter((r) => all.has(r.id)).length;
  let text = `## Reproduction study (${budget}): TR vs LR scheduling, Fashion-MNIST, ResNet-20\n\n`;
  text += `- ${machineLine()}\n`;
  text += `- ${done} of ${unique.length} QAT runs done; every QAT run: ${lengthLabel(B.length)}${B.trainSubset ? ` on the first ${B.trainSubset} training images` : ''}, test on ${B.testSubset ?? 'all 10,000'} test images, from the full-precision model.\n`;
  if (fp) text += `- full-precision start: ${lengthLabel(B.fp)} of SGD (batch ${fp.batch}), top-1 **${fp.top1?.toFixed(2)}%**.\n`;
  for (const note of notes) text += `- ${note}\n`;
  text += '\n';

  const rows = [];
  for (const s of SETTINGS) {
    const lr = ok(B.seeds.map((seed) => qat({ bits: s.bits, opt: s.opt, arm: 'lr', seed })));
    for (const arm of B.arms) {
      const rs = ok(B.seeds.map((seed) => qat({ bits: s.bits, opt: s.opt, arm, seed })));
      if (rs.length === 0) {
        rows.push([s.name, ARMS[arm].label, 'n/a (n=0)', '', '', '', '', '']);
        continue;
      }
      const tr = ARMS[arm].mode === 'tr';
      rows.push([
        s.name,
        ARMS[arm].label,
        `${meanStd(top(rs), 2)} (n=${rs.length})`,
        arm !== 'lr' && lr.length ? (mean(top(rs)) - mean(top(lr))).toFixed(2) : '',
        `${rs[0].batch} × ${rs[0].steps}`,
        tr ? meanStd(rs.map((r) => r.tracking_error ?? Number.NaN), 3) : '',
        mean(rs.map((r) => r.late_k ?? Number.NaN)).toExponential(2),
        tr ? mean(rs.map((r) => (r.late_k ?? Number.NaN) / (r.late_R ?? Number.NaN))).toFixed(2) : '',
      ]);
    }
  }
  text += table(
    'TR scheduling against LR scheduling (final top-1 %, mean ± std over seeds)',
    ['setting', 'arm', 'top-1', 'Δ vs LR', 'batch × steps', 'tracking error', 'late TR k', 'late k / R'],
    rows,
    [
      'tracking error = mean |K − R| / R(0) after the settling window (the controller\'s summary.json).',
      'late TR = mean measured transition rate k over the last 20% of the steps (oscillation); late k / R: the same against the target.',
      'LR scheduling: mode=baseline with the paper-text settings; TR, paper text: the default controller (additive rule, m = 0.99, eta = U(0), K(0) = 0); TR, released code: tr.preset=released; LR, released settings: mode=baseline with tr.preset=released (3 std scale inits, scales at LR 0.01, weight decay 1e-4, batch 256, per-epoch cosine).',
    ],
  );

  const tests = [];
  for (const s of SETTINGS) {
    for (const [a, b] of COMPARISONS) {
      const x = top(ok(B.seeds.map((seed) => qat({ bits: s.bits, opt: s.opt, arm: a, seed }))));
      const y = top(ok(B.seeds.map((seed) => qat({ bits: s.bits, opt: s.opt, arm: b, seed }))));
      const w = welch(x, y);
      tests.push([s.name, `${ARMS[a].label} − ${ARMS[b].label}`, `${x.length} / ${y.length}`, w ? w.diff.toFixed(2) : 'n/a', w ? w.t.toFixed(2) : 'n/a', w ? w.df.toFixed(1) : 'n/a', w ? w.p.toFixed(3) : 'n/a']);
    }
  }
  if (tests.length) {
    text += '\n';
    text += table('Significance: Welch\'s t-test on the final top-1 (two-sided)', ['setting', 'comparison', 'n', 'Δ mean', 't', 'df', 'p'], tests, [
      'n/a: fewer than two finished seeds on a side. With three seeds per arm, only large effects can reach p < 0.05.',
    ]);
  }

  if (B.sweep) {
    const sweepRows = [];
    for (const [param, values] of Object.entries(sweeps)) {
      for (const v of values) {
        const tr = ok(sweepSeeds.map((seed) => sweepSpec(param, v, seed)));
        const base = param === 'steps' ? ok(sweepSeeds.map((seed) => sweepSpec(param, v, seed, 'lr'))) : ok(sweepSeeds.map((seed) => qat({ bits: 2, arm: 'lr', seed })));
        sweepRows.push([
          `${param === 'momentum' ? 'm' : param}=${v}`,
          tr.length ? meanStd(top(tr), 2) : 'n/a',
          base.length ? meanStd(top(base), 2) : 'n/a',
          tr.length && base.length ? (mean(top(tr)) - mean(top(base))).toFixed(2) : 'n/a',
          tr.length ? meanStd(tr.map((r) => r.tracking_error ?? Number.NaN), 3) : 'n/a',
          tr.length ? mean(tr.map((r) => r.late_k ?? Number.NaN)).toExponential(2) : 'n/a',
        ]);
      }
    }
    text += '\n';
    text += table(
      `Sweeps around W2A2 / SGDT (${ARMS[sweepArm].label}; ${sweepSeeds.length} seed(s) each; one setting changed at a time)`,
      ['setting', 'TR-scheduled top-1', 'LR-scheduled top-1 (same steps)', 'Δ', 'tracking error', 'late TR'],
      sweepRows,
      ['eta in absolute units (U(0) = 0.1 for SGD).'],
    );
  }

  // plots per setting, from seed 0 of each arm
  reportFiles.length = 0;
  const plots = [];
  const write = (name, svg) => {
    writeFileSync(join(dir, name), svg);
    reportFiles.push(join(dir, name));
    plots.push(name);
  };
  for (const s of SETTINGS) {
    const arms = B.arms.map((arm) => ({ arm, r: of(qat({ bits: s.bits, opt: s.opt, arm, seed: 0 })) })).filter((a) => a.r);
    const trArms = arms.filter((a) => ARMS[a.arm].mode === 'tr');
    if (trArms.length) {
      write(`k-vs-r-${s.file}.svg`, linePlot({ title: `${s.name}: running TR K against the target R (seed 0)`, ylabel: 'transition rate', series: trArms.flatMap(({ arm, r }) => [
        { name: `R, ${ARMS[arm].label}`, xs: r.curves.step, ys: r.curves.R, dash: true },
        { name: `K, ${ARMS[arm].label}`, xs: r.curves.step, ys: r.curves.K },
      ]) }));
    }
    if (arms.length) {
      write(`u-${s.file}.svg`, linePlot({ title: `${s.name}: LR of the quantized weights (U under TR; seed 0)`, ylabel: 'U or LR', logY: true, series: arms.map(({ arm, r }) => ({ name: ARMS[arm].label, xs: r.curves.step, ys: r.curves.lr_quant })) }));
      write(`k-${s.file}.svg`, linePlot({ title: `${s.name}: measured transition rate k (window means; seed 0)`, ylabel: 'k', logY: true, series: arms.map(({ arm, r }) => ({ name: ARMS[arm].label, xs: r.curves.step, ys: r.curves.k })) }));
    }
  }
  text += `\nPlots (per setting, seed 0; x: step): ${plots.length ? plots.join(', ') : 'none yet'}. Under the per-layer scope (released code) U is the size-weighted mean of the layers' U.\n`;
  writeFileSync(join(dir, 'study.md'), text);
  reportFiles.push(join(dir, 'study.md'));
  return text;
}

// ---------------------------------------------------------------------------------------------
// main

const t0 = Date.now();
let init = [];
const fpOk = !refused.has(FP);
if (fpOk) {
  if (!existsSync(resultPath(FP))) {
    process.stderr.write(`study: full-precision model, ${lengthLabel(B.fp)}\n`);
    await execute(FP, budget === 'tiny' || opts.threads ? [] : [`worker.threads=${cpus().length}`]);
    if (FP.error) {
      console.error(`study: the full-precision run failed: ${FP.error}`);
      process.exit(1);
    }
  }
  const fpPath = resolve(dir, readJson(resultPath(FP)).checkpoint);
  if (!existsSync(fpPath)) {
    console.error(`study: the full-precision checkpoint ${fpPath} is missing; delete ${resultPath(FP)} to train it again`);
    process.exit(1);
  }
  init = [`model.init_checkpoint=${fpPath}`];
} else {
  notes.push('QAT runs start from random initialisation, not from a full-precision model (see the skipped runs).');
}
const todo = unique.filter((run) => !refused.has(run) && selected(run) && !existsSync(resultPath(run)));
const doneCount = unique.filter((run) => existsSync(resultPath(run))).length;
const others = unique.length - doneCount - todo.length; // refused, or not among --settings
process.stderr.write(`study: ${todo.length} QAT runs to go (${doneCount} done${others ? `, ${others} not selected` : ''}), ${jobs} at a time, ${threads} thread(s) each\n`);
await pool(todo, jobs, (run) => execute(run, init));
console.log(report());
process.stderr.write(`study: ${((Date.now() - t0) / 60000).toFixed(1)} min\n`);
const failedRuns = todo.filter((r) => r.error);
if (failedRuns.length > 0) {
  console.error(`study: ${failedRuns.length} run(s) failed: ${failedRuns.map((r) => r.id).join(', ')}`);
  process.exitCode = 1;
}
