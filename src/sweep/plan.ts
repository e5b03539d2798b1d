import { basename, extname, resolve } from 'node:path';
import { applyOverrides, parseConfig } from '../config/load.js';
import { resolveConfig, type ResolvedConfig } from '../config/resolve.js';
import type { Range, SweepSpec } from './spec.js';

/** A value a swept key takes (what --set accepts). */
export type SweepValue = number | string | boolean | null | Array<number | string | boolean | null>;

/** One run of a sweep: its deterministic name, its setting, its seed and the config it trains. */
export interface PlannedRun {
  index: number;
  /** The run's name (config `name`): its folder is <sweep>/runs/<name>-<stamp>. */
  name: string;
  /** The setting without the seed, `key=value ...`: runs of one group differ only in their seed. */
  group: string;
  settings: Record<string, SweepValue>;
  seed: number;
  /** The same run by hand: trqat train <base> --set ... (the swept keys and the seed). */
  sets: string[];
  config: ResolvedConfig;
}

export interface SweepPlan {
  spec: SweepSpec;
  /** The sweep folder: sweep.json, report.html and runs/. */
  dir: string;
  runs: PlannedRun[];
}

/** Random values keep this many significant digits, so a run's name states its value exactly. */
const RANDOM_DIGITS = 4;

/**
 * The sweep's runs, in a fixed order: every grid point (last key fastest) with every random trial,
 * each with every seed. Pure: the same file gives the same names, settings and configs.
 */
export function planSweep(spec: SweepSpec, out?: string): SweepPlan {
  const dir = resolve(out ?? spec.out ?? `sweeps/${basename(spec.file, extname(spec.file))}`);
  const settings = cross(gridPoints(spec.grid), randomTrials(spec.random));
  const baseSeed = typeof spec.raw.seed === 'number' ? spec.raw.seed : 0;
  const seeds = Array.isArray(spec.seeds) ? spec.seeds : Array.from({ length: spec.seeds }, (_, i) => baseSeed + i);
  const prefix = typeof spec.raw.name === 'string' ? spec.raw.name : 'run';
  const labels = keyLabels(Object.keys(settings[0] ?? {}));
  const used = new Set<string>();
  const runs: PlannedRun[] = [];
  for (const setting of settings) {
    const entries = Object.entries(setting);
    const base = [prefix, ...entries.map(([key, value]) => labels[key]! + valueText(value))].join('-').replace(/[^A-Za-z0-9._-]/g, '_');
    let stem = base;
    for (let n = 2; used.has(stem); n++) stem = `${base}-${n}`; // rounded random draws may coincide
    used.add(stem);
    const group = entries.length === 0 ? '(base)' : entries.map(([key, value]) => `${key}=${valueText(value)}`).join(' ');
    for (const seed of seeds) {
      const name = `${stem}-s${seed}`;
      const sets = [...entries.map(([key, value]) => `${key}=${JSON.stringify(value)}`), `seed=${seed}`];
      const forced = [`name=${name}`, `out_dir=${resolve(dir, 'runs')}`, ...(spec.ranks === undefined ? [] : [`worker.nproc_per_node=${spec.ranks}`])];
      // Sweep runs serve no dashboard (the sweep prints a table); each still writes its report.html.
      const raw = applyOverrides(spec.raw, ['dashboard.enabled=false', ...sets, ...forced]);
      const config = resolveConfig(parseConfig(raw, `sweep run ${runs.length} (${name}: --set ${sets.join(' --set ')})`));
      runs.push({ index: runs.length, name, group, settings: setting, seed, sets, config });
    }
  }
  return { spec, dir, runs };
}

type Setting = Record<string, SweepValue>;

function gridPoints(grid: Record<string, SweepValue[]>): Setting[] {
  let points: Setting[] = [{}];
  for (const [key, values] of Object.entries(grid)) points = points.flatMap((point) => values.map((value) => ({ ...point, [key]: value })));
  return points;
}

function randomTrials(random: SweepSpec['random']): Setting[] {
  if (!random) return [{}];
  const next = mulberry32(random.seed);
  return Array.from({ length: random.trials }, () =>
    Object.fromEntries(Object.entries(random.space).map(([key, space]) => [key, Array.isArray(space) ? space[Math.floor(next() * space.length)]! : draw(space, next())])),
  );
}

function cross(a: Setting[], b: Setting[]): Setting[] {
  return a.flatMap((x) => b.map((y) => ({ ...x, ...y })));
}

/** A value of the range from u in [0, 1): uniform, or uniform in log space. */
export function draw(range: Range, u: number): number {
  const x = range.log ? Math.exp(Math.log(range.min) + u * (Math.log(range.max) - Math.log(range.min))) : range.min + u * (range.max - range.min);
  return range.integer ? Math.min(Math.round(x), Math.floor(range.max)) : Number(x.toPrecision(RANDOM_DIGITS));
}

/** A small seeded generator (mulberry32): the same seed, the same draws, on any machine. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** How a key appears in run names: its last part (eta), or the whole path where two keys share it. */
function keyLabels(keys: string[]): Record<string, string> {
  const leaf = (key: string) => key.slice(key.lastIndexOf('.') + 1);
  return Object.fromEntries(keys.map((key) => [key, keys.filter((other) => leaf(other) === leaf(key)).length > 1 ? key : leaf(key)]));
}

function valueText(value: SweepValue): string {
  return Array.isArray(value) ? value.map((v) => String(v)).join('_') : String(value);
}
