// Reliability campaign: the scenarios, one trial (its plan drawn from its seed, its record), and the table.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import fc from 'fast-check';
import { machineLine, medRange, table } from '../lib.mjs';
import { Findings } from './checks.mjs';
import { CHECKPOINT_FAULTS } from './checkpoint-faults.mjs';
import { CONTROLLER_FAULTS } from './controller-faults.mjs';
import { DISK_FULL, diskFullInside } from './disk-full.mjs';
import { budget, CONFIG_KEY, HEARTBEAT_TIMEOUT_MS, running, STEPS } from './harness.mjs';
import { RANK_KILL } from './rank-kill.mjs';
import { WORKER_FAULTS } from './worker-faults.mjs';

export const SCENARIOS = [...WORKER_FAULTS, CONTROLLER_FAULTS[0], CHECKPOINT_FAULTS[0], DISK_FULL, CONTROLLER_FAULTS[1], RANK_KILL, CHECKPOINT_FAULTS[1]];

/** A trial's seed: the scenario's number and the trial's index, so each trial can be replayed alone. */
export const seedOf = (scenario, index) => 1000 * scenario.n + index;
const planOf = (scenario, seed) => fc.sample(fc.noBias(scenario.draw()), { seed, numRuns: 1 })[0];
export const scenarioNamed = (name) => SCENARIOS.find((s) => String(s.n) === name || s.id === name) ?? fail(`unknown scenario "${name}" (${SCENARIOS.map((s) => `${s.n} ${s.id}`).join(', ')})`);

export function fail(message) {
  console.error(`reliability.mjs: ${message}`);
  process.exit(2);
}

/** Runs one trial; returns its record (what trials.jsonl holds). Never throws: a harness error is a lost trial. */
export async function trial(scenario, seed, index, refDir, mount = null) {
  const plan = planOf(scenario, seed);
  const f = new Findings();
  const started = Date.now();
  const name = `${scenario.id}-${seed}`;
  let runDir = null;
  try {
    runDir = mount ? await diskFullInside(f, plan, name, refDir, mount) : await scenario.trial(f, plan, name, refDir, seed);
  } catch (error) {
    f.check(false, `harness: ${error.message.split('\n')[0]}`);
  }
  for (const cli of running) {
    f.check(false, `harness: the trial ended with a CLI still running (${cli.child.spawnargs.slice(2, 4).join(' ')}): killed`);
    cli.child.kill('SIGKILL');
    await cli.ended;
  }
  const outcome = f.reasons.length === 0 ? 'survived' : 'lost';
  if (outcome === 'survived' && runDir) rmSync(runDir, { recursive: true, force: true });
  return {
    scenario: scenario.id,
    n: scenario.n,
    index,
    seed,
    config: CONFIG_KEY,
    budget,
    plan,
    outcome,
    reasons: f.reasons,
    latency_ms: f.latency_ms,
    fault: f.fault,
    run_dir: outcome === 'lost' ? runDir : null,
    seconds: Math.round((Date.now() - started) / 100) / 10,
    finished: new Date().toISOString(),
  };
}

export const readTrials = (file) =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line))
    : [];

/** The table: per scenario, the trials of this config that are there. */
export function report(scenarios, trials, skipped, trialsFile) {
  const rows = scenarios.map((scenario) => {
    const mine = trials.filter((t) => t.scenario === scenario.id);
    if (skipped.has(scenario.id) && mine.length === 0) return [`${scenario.n}. ${scenario.title}`, 0, '-', '-', 'n/a', `not tried: ${skipped.get(scenario.id)}`];
    const lost = mine.filter((t) => t.outcome === 'lost');
    const latencies = mine.flatMap((t) => t.latency_ms).map((ms) => ms / 1000);
    const why = new Map();
    for (const t of lost) for (const reason of t.reasons) why.set(reason, [...(why.get(reason) ?? []), t.seed]);
    const losses = [...why].map(([reason, seeds]) => `${reason} (seed ${seeds.join(', ')})`).join('; ');
    return [
      `${scenario.n}. ${scenario.title}`,
      mine.length,
      mine.length - lost.length,
      lost.length,
      scenario.latency && latencies.length > 0 ? `${medRange(latencies, 2)} s` : 'n/a',
      losses.replace(/\|/g, '\\|') || '-',
    ];
  });
  const latencyNotes = scenarios.filter((s) => s.latency).map((s) => `${s.n}: ${s.latency}`);
  return table(
    'Reliability: faults tried, survived, lost',
    ['scenario', 'tried', 'survived', 'lost', 'latency median [min–max]', 'what a loss was'],
    rows,
    [
      machineLine(),
      `Each trial: a real \`trqat train\` (ResNet-20 W2A2, synthetic data, ${STEPS} steps, checkpoint every 4, 1 thread, heartbeat timeout ${HEARTBEAT_TIMEOUT_MS / 1000} s${scenarios.some((s) => s.id === 'rank-kill') ? '; scenario 9 with 2 gloo ranks, against a 2-rank reference' : ''}), one fault at a moment drawn from the trial's seed, then \`trqat resume\`; survived = every check held and the metrics log (step and evaluation records without their clock fields) equals an uninterrupted run's, record for record.`,
      `Latency: ${latencyNotes.join('; ')}.`,
      `Trials of config ${CONFIG_KEY} in ${trialsFile}; replay one: node scripts/bench/reliability.mjs --${budget} --replay <scenario>:<seed>.`,
    ],
  );
}
