import { ConfigError } from '../errors.js';
import { endpointProblem, isLoopback } from './endpoint.js';
import { isPluginRef, type ParsedConfig } from './schema.js';

/** The config with every derived default filled in: what the run folder records and the worker gets. */
export type ResolvedConfig = ParsedConfig & {
  model: { in_channels: number; num_classes: number; image_size: number };
  data: { root: string };
  optimizer: { lr: number; weight_decay: number; quantized_weight_decay: number };
  tr: { r0: number; k0: number; talr: { u0: number } };
};

const DEFAULT_LR: Record<string, number> = { sgd: 0.1, adam: 1e-3, adamw: 3e-4 };
const OTHER_OPTIMIZER_LR = 1e-3;
const DEFAULT_WEIGHT_DECAY: Record<string, number> = { sgd: 5e-4, adamw: 0.05 };
const FASHION_MNIST_ROOT = '/usr/share/datasets/fashion-mnist';
/** What `data.root` must hold, for the error when it is missing. */
const ROOT_HINT: Record<string, string> = {
  cifar10: 'cifar-10-python.tar.gz or its extracted folder cifar-10-batches-py',
  cifar100: 'cifar-100-python.tar.gz or its extracted folder cifar-100-python',
  imagenet: 'train/ and val/ with one sub-folder per class',
};

/** The datasets of a fixed shape (python/trqat/data/formats.py's DATASETS holds the same: test/config/registries.test.ts). */
export const FIXED_DATASET_SHAPES = {
  'fashion-mnist': { channels: 1, classes: 10, size: 28 },
  cifar10: { channels: 3, classes: 10, size: 32 },
  cifar100: { channels: 3, classes: 100, size: 32 },
} as const satisfies Partial<Record<ParsedConfig['data']['name'], { channels: number; classes: number; size: number }>>;

function datasetShape(data: ParsedConfig['data']): { channels: number; classes: number; size: number } {
  switch (data.name) {
    case 'imagenet':
      return { channels: 3, classes: 1000, size: data.image_size };
    case 'synthetic':
      return { channels: data.synthetic.channels, classes: data.synthetic.num_classes, size: data.synthetic.image_size };
    default:
      return FIXED_DATASET_SHAPES[data.name];
  }
}

/**
 * Fills the defaults that depend on other fields (docs/method.md: R(0) = lambda * sqrt(b_w), U(0) = LR;
 * m and eta from `controllerDefaults`). `tr.momentum` and `tr.talr.eta` stay null under `tr.auto`:
 * they need the run length, which `controllerSettings` knows.
 */
export function resolveConfig(parsed: ParsedConfig): ResolvedConfig {
  const { data, quant, optimizer, tr } = parsed;
  if (quant.weight_bits === 32 && parsed.mode === 'tr') {
    throw new ConfigError('quant.weight_bits=32 (full precision) leaves no quantized weights to schedule: use mode=baseline, or weight_bits 1..8');
  }
  if (quant.weight_bits === 32 && Object.keys(quant.layer_bits).length > 0) {
    throw new ConfigError('quant.layer_bits sets bits of quantized layers, but quant.weight_bits=32 quantizes none: set weight_bits 1..8, or leave layer_bits out');
  }
  if (data.root === null && data.factory === null && data.name !== 'fashion-mnist' && data.name !== 'synthetic') {
    throw new ConfigError(`data.root is required for ${data.name}: the folder that holds ${ROOT_HINT[data.name]}`);
  }
  if (data.factory !== null && parsed.model.factory === null && (parsed.model.in_channels === null || parsed.model.num_classes === null)) {
    throw new ConfigError('data.factory: trqat cannot tell the input channels and classes of your data; set model.in_channels and model.num_classes (or use model.factory)');
  }
  if (!isPluginRef(tr.talr) && tr.talr.rule !== 'additive' && tr.talr.max_ratio === null && tr.talr.eps === 0) {
    throw new ConfigError('tr.talr.max_ratio is null (no clamp of R/K), so K = 0 would divide by zero: set tr.talr.eps > 0 (the released code uses 1e-8) or a max_ratio');
  }
  const { heartbeat_interval_ms: interval, heartbeat_timeout_ms: timeout } = parsed.worker;
  if (timeout < 2 * interval) {
    throw new ConfigError(`worker.heartbeat_timeout_ms (${timeout}) must be at least twice worker.heartbeat_interval_ms (${interval}), or every healthy worker would be declared dead`);
  }
  const endpointIssue = endpointProblem(parsed.bridge.endpoint);
  if (endpointIssue) throw new ConfigError(`bridge.endpoint ${parsed.bridge.endpoint}: ${endpointIssue}`);
  if (parsed.bridge.curve === 'off' && !isLoopback(parsed.bridge.endpoint)) {
    throw new ConfigError(
      `bridge.endpoint ${parsed.bridge.endpoint} can be reached from other machines, and bridge.curve=off would let any of them join the run; ` +
        'use bridge.curve=auto (the default: ZeroMQ CURVE keys are made for the run) or bind a loopback address (tcp://127.0.0.1:*)',
    );
  }
  const { nproc_per_node: ranks, launch } = parsed.worker;
  const split = (launch === 'local' ? ranks : 1) * parsed.train.accumulate_steps;
  if (data.batch_size % split !== 0) {
    throw new ConfigError(
      `data.batch_size (${data.batch_size}) is the batch of one optimizer step over all ranks, split into ${launch === 'local' ? ranks : 1} rank(s) x ` +
        `${parsed.train.accumulate_steps} micro-batch(es): make it a multiple of ${split}`,
    );
  }
  const shape = datasetShape(data);
  const lr = optimizer.lr ?? DEFAULT_LR[optimizer.name] ?? OTHER_OPTIMIZER_LR;
  const weightDecay = optimizer.weight_decay ?? DEFAULT_WEIGHT_DECAY[optimizer.name] ?? 0;
  const u0 = tr.talr.u0 ?? lr;
  const r0 = tr.r0 ?? r0Rule(tr.lambda, quant.weight_bits === 32 ? 1 : quant.weight_bits);
  const controller = controllerDefaults(tr, lr, u0, r0, null);
  return {
    ...parsed,
    model: {
      ...parsed.model,
      in_channels: parsed.model.in_channels ?? shape.channels,
      num_classes: parsed.model.num_classes ?? shape.classes,
      image_size: parsed.model.image_size ?? shape.size,
    },
    data: { ...data, root: data.root ?? FASHION_MNIST_ROOT },
    optimizer: {
      ...optimizer,
      lr,
      weight_decay: weightDecay,
      quantized_weight_decay: optimizer.quantized_weight_decay ?? weightDecay,
    },
    train: {
      ...parsed.train,
      distill: { ...parsed.train.distill, teacher_model: parsed.train.distill.teacher_model ?? parsed.model.name },
    },
    tr: {
      ...tr,
      r0,
      k0: tr.k0 === 'r0' ? r0 : tr.k0,
      momentum: controller.momentum,
      talr: { ...tr.talr, u0, eta: controller.eta },
    },
  };
}

/** Number of steps of the whole run, once the worker has told how many steps an epoch has. */
export function totalSteps(config: ParsedConfig, stepsPerEpoch: number): number {
  return config.train.steps ?? Math.max(1, Math.round(config.train.epochs * stepsPerEpoch));
}

/**
 * R(0) * T: roughly twice the expected number of transitions per weight over a run. The paper's
 * defaults (eta = U(0), m = 0.99) were set for runs of 80K+ steps, where it is ~100; `tr.auto`
 * scales eta to keep U as responsive in shorter runs.
 */
export const AUTO_REFERENCE_TRANSITIONS = 100;
/** Bounds of the running TR's time constant 1/(1-m) under `tr.auto`, in steps. */
const AUTO_MIN_TIME_CONSTANT = 10;
const AUTO_MAX_TIME_CONSTANT = 100;
/** The paper's m of the running TR (unconfirmed; docs/method.md). */
const PAPER_MOMENTUM = 0.99;

export interface ControllerSettings {
  momentum: number;
  eta: number;
}

/**
 * The one owner of the controller's derived defaults. Explicit `tr.momentum` and `tr.talr.eta`
 * win. Otherwise the paper's: m = 0.99 and eta = U(0), where U(0) = 0 falls back to the optimizer's
 * LR (eta must be positive). Under `tr.auto` they come from the run length `total` instead (time
 * constant of K = 1% of the run, clamped to 10..100 steps, which gives m = 0.99 for long runs;
 * eta = base * max(1, 100 / (R(0) T))), and stay null while the length is not known yet.
 */
function controllerDefaults(tr: ParsedConfig['tr'], lr: number, u0: number, r0: number, total: number | null): { momentum: number | null; eta: number | null } {
  const etaBase = u0 > 0 ? u0 : lr;
  if (!tr.auto) return { momentum: tr.momentum ?? PAPER_MOMENTUM, eta: tr.talr.eta ?? etaBase };
  const timeConstant = total === null ? null : Math.min(AUTO_MAX_TIME_CONSTANT, Math.max(AUTO_MIN_TIME_CONSTANT, total / 100));
  return {
    momentum: tr.momentum ?? (timeConstant === null ? null : 1 - 1 / timeConstant),
    eta: tr.talr.eta ?? (total === null ? null : etaBase * Math.max(1, AUTO_REFERENCE_TRANSITIONS / (r0 * total))),
  };
}

/** The running-TR momentum and TALR step size in force for a run of `total` steps (see controllerDefaults). */
export function controllerSettings(config: ResolvedConfig, total: number): ControllerSettings {
  const { momentum, eta } = controllerDefaults(config.tr, config.optimizer.lr, config.tr.talr.u0, config.tr.r0, total);
  return { momentum: momentum!, eta: eta! };
}

/** What R(0) needs to know of a quantized layer (the worker's ready.layers). */
export interface LayerBits {
  numel: number;
  weight_bits: number;
  act_bits?: number;
}

/** The paper's rule, the one place it is written (docs/method.md): R(0) = lambda * sqrt(b_w). */
export function r0Rule(lambda: number, weightBits: number): number {
  return lambda * Math.sqrt(weightBits);
}

/** True when the config's R(0) is the rule's for quant.weight_bits (not set by tr.r0, nor recorded by a resume). */
function r0IsDerived(config: ResolvedConfig): boolean {
  const { tr, quant } = config;
  return Math.abs(tr.r0 - r0Rule(tr.lambda, quant.weight_bits)) <= 1e-12 * tr.r0;
}

/**
 * R(0) for the model's quantized layers. With one bit-width b for all: lambda * sqrt(b), the paper's
 * rule. With mixed bit-widths (quant.layer_bits): lambda * sum_l n_l sqrt(b_l) / sum_l n_l, the
 * size-weighted mean of the layers' own targets lambda * sqrt(b_l). k is the size-weighted mean of
 * the layers' rates, so this is the network-wide rate at which every layer moves at its own
 * bit-width's target. A config whose R(0) is not lambda * sqrt(quant.weight_bits) keeps it: tr.r0
 * was set, or the run already recorded the value in force (a resume).
 */
export function r0ForLayers(config: ResolvedConfig, layers: readonly LayerBits[]): number {
  const { tr, quant } = config;
  const bits = [...new Set(layers.map((layer) => layer.weight_bits))];
  if (!r0IsDerived(config) || bits.length === 0 || (bits.length === 1 && bits[0] === quant.weight_bits)) return tr.r0;
  if (bits.length === 1) return r0Rule(tr.lambda, bits[0]!);
  const total = layers.reduce((sum, layer) => sum + layer.numel, 0);
  return (tr.lambda * layers.reduce((sum, layer) => sum + layer.numel * Math.sqrt(layer.weight_bits), 0)) / total;
}

/**
 * The config a model's quantized layers run with. `adoptBits` (a client's script chose the bits):
 * when every layer has the same bits and the config's differ, the config follows the model, and R(0)
 * with it unless tr.r0 was set. Then R(0) of mixed bit-widths (r0ForLayers). Returns the config
 * (the same object when nothing changed) and what to tell the user.
 */
export function adoptModelBits(config: ResolvedConfig, layers: readonly LayerBits[], adoptBits: boolean): { config: ResolvedConfig; warnings: string[] } {
  const warnings: string[] = [];
  let next = config;
  const bits = [...new Set(layers.map((l) => l.weight_bits))];
  const acts = [...new Set(layers.map((l) => l.act_bits))];
  const quant = config.quant;
  if (adoptBits && bits.length === 1) {
    const weightBits = bits[0]!;
    const actBits = acts.length === 1 && acts[0] !== undefined ? acts[0] : quant.act_bits;
    if (weightBits !== quant.weight_bits || actBits !== quant.act_bits) {
      const derived = r0IsDerived(config);
      const r0 = derived ? r0Rule(config.tr.lambda, weightBits) : config.tr.r0;
      next = {
        ...config,
        quant: { ...quant, weight_bits: weightBits as typeof quant.weight_bits, act_bits: actBits as typeof quant.act_bits },
        tr: { ...config.tr, r0 },
      };
      if (weightBits !== quant.weight_bits) {
        warnings.push(`the model has ${weightBits}-bit weights (the config said ${quant.weight_bits})${derived ? `: R(0) = lambda * sqrt(${weightBits}) = ${r0.toExponential(3)}` : ''}`);
      }
    }
  }
  const r0 = r0ForLayers(next, layers);
  if (r0 !== next.tr.r0) {
    next = { ...next, tr: { ...next.tr, r0 } };
    const sorted = [...bits].sort((a, b) => a - b);
    warnings.push(`the model's quantized layers have ${sorted.join(', ')}-bit weights: R(0) = ${r0.toExponential(3)}, the size-weighted mean of lambda * sqrt(bits) over the layers`);
  }
  return { config: next, warnings };
}
