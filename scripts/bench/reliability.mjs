// Reliability: a resumable campaign of randomized fault trials against real runs of the CLI
// (`node dist/cli.js train|resume`, the real Python worker over real ZeroMQ), on a small, fast config.
// Each trial injects one fault at a moment drawn from its seed, then checks what the run did against
// an uninterrupted reference run of the same config: the metrics log's step and evaluation records,
// without their clock fields, must be equal record for record. Scenarios (each described in its module
// under reliability/):
//   1 worker-kill, 2 checkpoint-kill, 3 auto-restart, 4 worker-hang    reliability/worker-faults.mjs
//   5 controller-kill, 8 startup-kill                                   reliability/controller-faults.mjs
//   6 corrupt-checkpoint, 10 tampered-controller                        reliability/checkpoint-faults.mjs
//   7 disk-full                                                         reliability/disk-full.mjs
//   9 rank-kill (one of 2 gloo ranks)                                   reliability/rank-kill.mjs
// The harness (config, processes) is reliability/harness.mjs, the shared checks reliability/checks.mjs,
// a trial and the table reliability/campaign.mjs.
// A trial survives when every check holds; otherwise it is lost, with what went wrong. Each finished
// trial is one JSON line of <out>/reliability/trials.jsonl (its seed replays it: --replay 1:1003);
// a new start runs only the trials still missing for the budget (tiny: one trial of scenarios 1 and 6;
// quick: 3 of each; full: 20 of each). Run folders of lost trials are kept for inspection.
//
// Usage: node scripts/bench/reliability.mjs [--tiny|--quick|--full] [options] (--help: the options)
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Option } from 'commander';
import { outDir, parseArgs, positiveInt } from './lib.mjs';
import { configure } from './reliability/harness.mjs';

const opts = parseArgs('reliability.mjs', 'Reliability: randomized fault trials against real runs; tried, survived and lost per scenario', (cli) =>
  cli
    .option('--trials <n>', 'trials per scenario (default by budget: 1, 3, 20)', positiveInt)
    .option('--scenarios <list>', 'only these scenarios, by number or name (default by budget: tiny 1,6; else all)')
    .option('--replay <scenario:seed>', 'run one trial again from its seed (e.g. 1:1003); prints its record, records nothing')
    .addOption(new Option('--disk-full-in <dir>', 'internal: run the --replay trial of scenario 7 inside the namespace, on the tmpfs at <dir>').hideHelp()),
);
const budget = opts.budget;
const dir = outDir(opts, 'reliability');
const TRIALS_FILE = join(dir, 'trials.jsonl');
configure(budget, dir); // before the scenarios are loaded: they read the config
const { CONFIG_KEY, RUNS } = await import('./reliability/harness.mjs');
const { reference } = await import('./reliability/checks.mjs');
const { tmpfsUnavailable } = await import('./reliability/disk-full.mjs');
const { fail, readTrials, report, scenarioNamed, SCENARIOS, seedOf, trial } = await import('./reliability/campaign.mjs');

// --- main ------------------------------------------------------------------------------------

if (opts.replay) {
  const [name, seedText] = opts.replay.split(':');
  const scenario = scenarioNamed(name);
  const seed = Number(seedText);
  if (!Number.isInteger(seed)) fail(`--replay ${opts.replay}: expected <scenario>:<seed>, e.g. 1:1003`);
  const refDir = await reference();
  const record = await trial(scenario, seed, null, refDir, opts.diskFullIn ?? null);
  if (!opts.diskFullIn) console.log(report([scenario], [record], new Map(), TRIALS_FILE));
  console.log(JSON.stringify(record));
  process.exit(0);
}

const scenarios = (opts.scenarios ?? (budget === 'tiny' ? '1,6' : SCENARIOS.map((s) => s.n).join(','))).split(',').map((s) => scenarioNamed(s.trim()));
const perScenario = Number(opts.trials ?? { tiny: 1, quick: 3, full: 20 }[budget]);
const skipped = new Map();
if (scenarios.some((s) => s.id === 'disk-full')) {
  const why = await tmpfsUnavailable();
  if (why) {
    skipped.set('disk-full', why);
    process.stderr.write(`reliability: skipping scenario 7 (disk-full): ${why}\n`);
  }
}
const done = readTrials(TRIALS_FILE).filter((t) => t.config === CONFIG_KEY);
const todo = scenarios
  .filter((s) => !skipped.has(s.id))
  .flatMap((s) => Array.from({ length: perScenario }, (_, index) => ({ scenario: s, index })))
  .filter(({ scenario, index }) => !done.some((t) => t.scenario === scenario.id && t.index === index));
process.stderr.write(`reliability: ${todo.length} trials to go (${done.length} there for config ${CONFIG_KEY}; ${perScenario} per scenario)\n`);
mkdirSync(RUNS, { recursive: true });
const refDir = todo.length > 0 ? await reference() : null;
const started = Date.now();
for (const [i, { scenario, index }] of todo.entries()) {
  const seed = seedOf(scenario, index);
  process.stderr.write(`reliability: [${i + 1}/${todo.length}] ${scenario.n} ${scenario.id}, trial ${index + 1}, seed ${seed}: `);
  const record = await trial(scenario, seed, index, refDir);
  appendFileSync(TRIALS_FILE, `${JSON.stringify(record)}\n`);
  process.stderr.write(`${record.outcome} (${record.seconds} s)${record.outcome === 'lost' ? `: ${record.reasons.join('; ')}` : ''}\n`);
}
if (todo.length > 0) process.stderr.write(`reliability: ${todo.length} trials in ${Math.round((Date.now() - started) / 1000)} s\n`);
const trials = readTrials(TRIALS_FILE).filter((t) => t.config === CONFIG_KEY && scenarios.some((s) => s.id === t.scenario));
console.log(report(scenarios, trials, skipped, TRIALS_FILE));
