import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { readConfigFile } from '../config/load.js';
import { ConfigError } from '../errors.js';

/** A config key as --set writes it: dotted, e.g. tr.talr.eta or model.kwargs.width (plug-in arguments too). */
const keySchema = z.string().regex(/^[A-Za-z_][\w-]*(\.[\w-]+)*$/, 'must be a dotted config key, e.g. tr.talr.eta');
/** One value a key takes: what --set accepts (a YAML scalar or a list of them). */
const scalar = z.union([z.number(), z.string(), z.boolean(), z.null()]);
const value = z.union([scalar, z.array(scalar)]);

const range = z
  .strictObject({
    min: z.number(),
    max: z.number(),
    log: z.boolean().default(false).describe('draw uniformly in log space (min > 0)'),
    integer: z.boolean().default(false).describe('round to a whole number'),
  })
  .refine((r) => r.min < r.max, 'min must be below max')
  .refine((r) => !r.log || r.min > 0, 'a log range needs min > 0');
export type Range = z.output<typeof range>;

/** Keys of `random:` that are not config keys. */
const RANDOM_OPTIONS = ['trials', 'seed'];

const randomSchema = z
  .record(z.string(), z.unknown())
  .transform((raw, ctx) => {
    const trials = z.number().int().min(1).safeParse(raw.trials);
    if (!trials.success) ctx.addIssue({ code: 'custom', path: ['trials'], message: 'random search needs trials: N (a positive whole number of draws)' });
    const seed = z.number().int().min(0).default(0).safeParse(raw.seed);
    if (!seed.success) ctx.addIssue({ code: 'custom', path: ['seed'], message: 'must be a whole number >= 0 (seeds the draws)' });
    const space: Record<string, Range | Array<z.output<typeof value>>> = {};
    for (const [key, spec] of Object.entries(raw)) {
      if (RANDOM_OPTIONS.includes(key)) continue;
      const name = keySchema.safeParse(key);
      if (!name.success) ctx.addIssue({ code: 'custom', path: [key], message: name.error.issues[0]!.message });
      const parsed = Array.isArray(spec) ? z.array(value).min(1).safeParse(spec) : range.safeParse(spec);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        const why = Array.isArray(spec) ? issue.message : `${issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''}${issue.message}`;
        ctx.addIssue({ code: 'custom', path: [key], message: `${why} (give {min, max, log?, integer?} or a list of choices)` });
      } else space[key] = parsed.data;
    }
    if (Object.keys(space).length === 0 && trials.success) ctx.addIssue({ code: 'custom', message: 'random search names no key to draw (e.g. tr.talr.eta: {min: 0.1, max: 10, log: true})' });
    return { trials: trials.data ?? 1, seed: seed.data ?? 0, space };
  });

/** sweep.yaml: a base config, the settings to vary, seeds per setting, and where the runs run. */
export const sweepSchema = z.strictObject({
  base: z.string().min(1).optional().describe('a config file, relative to the sweep file (the default job without one)'),
  config: z.record(z.string(), z.unknown()).default({}).describe('config settings written inline, over those of `base`'),
  grid: z.record(keySchema, z.array(value).min(1, 'needs at least one value')).default({}).describe('every combination of these values'),
  random: randomSchema.optional().describe('trials draws of these keys ({min, max, log?, integer?} or a list of choices), seeded'),
  seeds: z.union([z.number().int().min(1), z.array(z.number().int().min(0)).min(1)]).default(1).describe('runs per setting: N (seeds base..base+N-1) or a list of seeds'),
  concurrency: z.number().int().min(1).default(1).describe('runs at once (at most one per GPU slot)'),
  gpus: z.union([z.enum(['auto', 'none']), z.array(z.union([z.number().int().min(0), z.string().min(1)])).min(1)]).default('auto').describe('auto: those of CUDA_VISIBLE_DEVICES or nvidia-smi; none; or a list'),
  ranks: z.number().int().min(1).optional().describe("ranks (GPUs) per run: sets worker.nproc_per_node (default: the config's)"),
  out: z.string().min(1).optional().describe('the sweep folder (default sweeps/<file name>); --out overrides'),
});
export type SweepSpec = z.output<typeof sweepSchema> & {
  /** The sweep file, absolute, and the base config read (base file with `config` over it). */
  file: string;
  raw: Record<string, unknown>;
};

/** Keys the sweep itself sets in every run: varying them would break the folder layout or the seeds. */
const RESERVED = ['name', 'out_dir', 'seed', 'worker.nproc_per_node'];
const RESERVED_HINT: Record<string, string> = { seed: 'use seeds: N', 'worker.nproc_per_node': 'use ranks: N', out_dir: 'use out: DIR or --out', name: 'run names come from the settings' };

/** Reads and checks a sweep file; every problem is named with its key. */
export function loadSweep(path: string): SweepSpec {
  const file = resolve(path);
  if (!existsSync(file)) throw new ConfigError(`sweep file ${path} does not exist (examples/sweep.yaml is an example; docs/sweeps.md describes the format)`);
  const text = readConfigFile(file); // YAML/JSON, size limit, duplicate keys; a missing file lists the shipped configs
  const parsed = sweepSchema.safeParse(text);
  if (!parsed.success) {
    const lines = parsed.error.issues.slice(0, 20).map((issue) => {
      const where = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
      if (issue.code === 'unrecognized_keys') return `  - ${issue.keys.join(', ')}: unknown sweep setting (allowed: ${Object.keys(sweepSchema.shape).join(', ')})`;
      return `  - ${where}: ${issue.message}`;
    });
    throw new ConfigError(`invalid sweep file ${path}:\n${lines.join('\n')}`);
  }
  const spec = parsed.data;
  const keys = [...Object.keys(spec.grid), ...Object.keys(spec.random?.space ?? {})];
  for (const key of keys) {
    if (RESERVED.includes(key)) throw new ConfigError(`sweep file ${path}: ${key} cannot be swept (the sweep sets it in every run: ${RESERVED_HINT[key]})`);
  }
  const twice = Object.keys(spec.grid).filter((key) => spec.random?.space[key] !== undefined);
  if (twice.length > 0) throw new ConfigError(`sweep file ${path}: ${twice.join(', ')} is both in grid and in random; keep it in one`);
  const base = spec.base === undefined ? {} : readConfigFile(resolve(dirname(file), spec.base));
  return { ...spec, file, raw: merge(base, spec.config) };
}

/** `over` deep-merged onto `base` (mappings merge, anything else replaces). */
function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = structuredClone(base);
  for (const [key, value] of Object.entries(over)) {
    const below = result[key];
    const mappings = [below, value].every((v) => v !== null && typeof v === 'object' && !Array.isArray(v));
    result[key] = mappings ? merge(below as Record<string, unknown>, value as Record<string, unknown>) : structuredClone(value);
  }
  return result;
}
