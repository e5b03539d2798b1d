#!/usr/bin/env node
// What a controller plug-in costs: the time of one decision (TrController.step, with stateDict as
// every lr message carries it) with the built-in schedule and rule vs the examples' plug-ins
// (examples/step-schedule.mjs, examples/damp-late-flippers.mjs), and its share of a measured step
// of a real run (the examples' tiny config, CPU worker).
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIST, importDist, machineLine, parseArgs, pick, quantile, ROOT, run, table } from './lib.mjs';

const opts = parseArgs('plugins.mjs', 'decision time with plug-ins vs built-ins, and its share of a step');
const { loadConfig } = await importDist('config/load.js');
const { TrController, loadPlugins } = await importDist('index.js');
const decisions = pick(opts.budget, { tiny: 2_000, quick: 50_000, full: 500_000 });
const layers = 19; // ResNet-20's quantized layers
const sizes = Array.from({ length: layers }, (_, i) => 2304 * (1 + (i % 3)));
const example = join(ROOT, 'examples', 'scheduling-as-code.yaml');

/** Median microseconds of one decision (and its state), in batches of 1000 steps. */
async function decisionTime(overrides, withPlugins) {
  const config = loadConfig(example, overrides);
  const plugins = withPlugins ? await loadPlugins(config) : {};
  const batches = [];
  for (let done = 0; done < decisions; done += 1000) {
    const controller = new TrController(config, 1000, sizes, 100, plugins);
    const counts = sizes.map((n) => Math.round(n * 0.003));
    const start = process.hrtime.bigint();
    for (let t = 0; t < 1000; t++) {
      controller.step(t, t === 0 ? null : counts);
      controller.stateDict();
    }
    batches.push(Number(process.hrtime.bigint() - start) / 1e3 / 1000);
  }
  return quantile(batches, 0.5);
}

const builtin = await decisionTime(['tr.schedule={name: step, milestones: [500, 750], factor: 0.3}', 'tr.talr={rule: additive}', 'tr.scope=layer'], false);
const plugin = await decisionTime([], true);

// A measured step: the examples' run on the CPU; the median time between consecutive step lines.
const out = mkdtempSync(join(tmpdir(), 'trqat-bench-plugins-'));
const steps = pick(opts.budget, { tiny: 24, quick: 64, full: 256 });
await run('node', [join(DIST, 'cli.js'), 'train', example, '--dashboard', 'off', '--set', `out_dir=${out}`, '--set', `train.steps=${steps}`]);
const runDir = join(out, readdirSync(out)[0]);
const times = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line)).filter((r) => r.type === 'step').map((r) => r.time);
const gaps = times.slice(2).map((t, i) => (t - times[i + 1]) * 1e6);
const stepUs = quantile(gaps, 0.5);

console.log(
  table(
    `Controller plug-ins: decision time (${layers} layers, per-layer U; median of ${decisions / 1000} batches of 1000 steps)`,
    ['controller', 'µs / decision', 'share of a step'],
    [
      ['built-in step schedule + additive rule (tr.scope layer)', builtin.toFixed(2), `${((100 * builtin) / stepUs).toFixed(3)}%`],
      ['examples: step-schedule.mjs + damp-late-flippers.mjs', plugin.toFixed(2), `${((100 * plugin) / stepUs).toFixed(3)}%`],
      ['plug-in minus built-in', (plugin - builtin).toFixed(2), `${((100 * (plugin - builtin)) / stepUs).toFixed(3)}%`],
    ],
    [`a measured step: ${(stepUs / 1000).toFixed(1)} ms (median, the examples' tiny synthetic run on the CPU, ${steps} steps)`, machineLine()],
  ),
);
