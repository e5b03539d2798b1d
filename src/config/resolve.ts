import type { ParsedConfig } from './schema.js';

/** The config with every derived default filled in: what the run folder records and the worker gets. */
export type ResolvedConfig = ParsedConfig & {
  model: { in_channels: number; num_classes: number };
  optimizer: { lr: number; weight_decay: number };
  tr: { r0: number; talr: { u0: number; eta: number } };
};

const DEFAULT_LR = { sgd: 0.1, adam: 1e-3, adamw: 3e-4 } as const;
const DEFAULT_WEIGHT_DECAY = { sgd: 5e-4, adam: 0, adamw: 0.05 } as const;
const DATASET_SHAPE = { 'fashion-mnist': { channels: 1, classes: 10 } } as const;

/** Fills the defaults that depend on other fields (method.md: R(0) = lambda * sqrt(b_w), U(0) = LR, eta = U(0)). */
export function resolveConfig(parsed: ParsedConfig): ResolvedConfig {
  const data = parsed.data;
  const shape =
    data.name === 'synthetic'
      ? { channels: data.synthetic.channels, classes: data.synthetic.num_classes }
      : DATASET_SHAPE[data.name];
  const lr = parsed.optimizer.lr ?? DEFAULT_LR[parsed.optimizer.name];
  const u0 = parsed.tr.talr.u0 ?? lr;
  return {
    ...parsed,
    model: {
      ...parsed.model,
      in_channels: parsed.model.in_channels ?? shape.channels,
      num_classes: parsed.model.num_classes ?? shape.classes,
    },
    optimizer: {
      ...parsed.optimizer,
      lr,
      weight_decay: parsed.optimizer.weight_decay ?? DEFAULT_WEIGHT_DECAY[parsed.optimizer.name],
    },
    tr: {
      ...parsed.tr,
      r0: parsed.tr.r0 ?? parsed.tr.lambda * Math.sqrt(parsed.quant.weight_bits),
      talr: { ...parsed.tr.talr, u0, eta: parsed.tr.talr.eta ?? (u0 > 0 ? u0 : lr) },
    },
  };
}

/** Number of steps of the whole run, once the worker has told how many steps an epoch has. */
export function totalSteps(config: ParsedConfig, stepsPerEpoch: number): number {
  return config.train.steps ?? Math.max(1, Math.round(config.train.epochs * stepsPerEpoch));
}
