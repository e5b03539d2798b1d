import type { PRESET_NAMES, RawConfig } from './schema.js';

/**
 * Named sets of defaults (`tr.preset`). A preset fills only what the config leaves unset, so every
 * item can still be set on its own. The sources and what each item means: docs/method.md.
 */
export const PRESETS: Record<(typeof PRESET_NAMES)[number], RawConfig> = {
  /** The paper's text: the schema's own defaults. */
  paper: {},
  /** The authors' released code for CIFAR ResNet-20 (docs/method.md, "The released code"). */
  released: {
    quant: { weight_scale_init: 'std', act_scale_init: 'std', lsq_grad_scale: false },
    data: { batch_size: 256 },
    optimizer: { weight_decay: 1e-4, scale_lr: 0.01, scale_momentum: 0, no_decay_momentum: 0 },
    lr_schedule: { name: 'cosine', interval: 'epoch' },
    tr: {
      r0: 5e-3,
      k0: 'r0',
      scope: 'layer',
      momentum: 0.99,
      schedule: { name: 'cosine', interval: 'epoch' },
      talr: { rule: 'momentum_multiplicative', momentum: 0.99, max_ratio: null, eps: 1e-8 },
    },
  },
};

type Mapping = Record<string, unknown>;
const isMapping = (value: unknown): value is Mapping => value !== null && typeof value === 'object' && !Array.isArray(value);

/** The raw config with its preset's values filled in wherever the config leaves a key unset. */
export function withPreset(raw: unknown): unknown {
  if (!isMapping(raw) || !isMapping(raw.tr)) return raw;
  const name = raw.tr.preset;
  // An unknown name is left for the schema to report.
  if (typeof name !== 'string' || !Object.hasOwn(PRESETS, name)) return raw;
  return fillUnset(raw, PRESETS[name as keyof typeof PRESETS] as Mapping);
}

function fillUnset(config: Mapping, defaults: Mapping): Mapping {
  const out: Mapping = { ...config };
  for (const [key, value] of Object.entries(defaults)) {
    if (out[key] === undefined) out[key] = value;
    // A plug-in's mapping (`{module, ...args}`) holds its own arguments: a preset's built-in settings stay out.
    else if (isMapping(out[key]) && isMapping(value) && !('module' in out[key])) out[key] = fillUnset(out[key], value);
  }
  return out;
}
