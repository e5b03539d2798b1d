import { z } from 'zod';

/** Shape shared by the target-TR schedule and the ordinary LR schedule. */
export const scheduleSchema = z.strictObject({
  name: z.enum(['cosine', 'linear', 'step', 'constant']).default('cosine'),
  /** Steps of linear warm-up from `warmup_start * base` up to `base`. */
  warmup_steps: z.number().int().min(0).default(0),
  warmup_start: z.number().min(0).max(1).default(0),
  /** cosine/linear: value at the end of the run, as a fraction of the base value. */
  final_factor: z.number().min(0).max(1).default(0),
  /** step: multiply by `factor` at each of these steps. */
  milestones: z.array(z.number().int().min(0)).default([]),
  factor: z.number().min(0).max(1).default(0.1),
  /**
   * "step": a new value every step. "epoch": one value per epoch, as torch's schedulers stepped once
   * per epoch (the authors' released code); warmup_steps and milestones then count epochs.
   */
  interval: z.enum(['step', 'epoch']).default('step'),
});
export type ScheduleConfig = z.infer<typeof scheduleSchema>;

const syntheticSchema = z.strictObject({
  train_size: z.number().int().positive().default(512),
  test_size: z.number().int().positive().default(256),
  image_size: z.number().int().min(8).default(28),
  channels: z.number().int().positive().default(1),
  num_classes: z.number().int().min(2).default(10),
});

/** Named sets of defaults (src/config/presets.ts holds their values). */
export const PRESET_NAMES = ['paper', 'released'] as const;

const bits = z.number().int().min(1).max(8);
/** An fnmatch pattern of module names, as in model.named_modules(): "layer4.*", "*.downsample.*", "blocks.[0-3].*". */
const layerPattern = z
  .string()
  .regex(/^[A-Za-z0-9_.*?[\]!-]+$/, 'must be an fnmatch pattern of module names (letters, digits, "_", "-", ".", "*", "?", "[...]"), e.g. "layer4.*"');
/** Node's timers cap at 2^31 - 1 ms (~24.8 days); a longer delay would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A Python callable by import path, e.g. "mypkg.models:build". */
const factoryRef = z.string().regex(/^[A-Za-z_][\w.]*:[A-Za-z_]\w*$/, 'use "package.module:function"');

/** The live dashboard of train, resume, run and serve, and the report written at the end of a run. */
export const dashboardSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Where the dashboard listens; an address beyond loopback requires the token printed in its URL. */
  host: z.string().min(1).default('127.0.0.1'),
  /** 0 picks a free port. */
  port: z.number().int().min(0).max(65535).default(0),
  /** Write report.html into the run folder when the run ends. */
  report: z.boolean().default(true),
});
export type DashboardConfig = z.output<typeof dashboardSchema>;

export const MODEL_NAMES = ['resnet20', 'resnet18', 'resnet34', 'resnet50', 'mobilenetv2', 'reactnet18', 'deit_tiny', 'deit_small'] as const;

export const configSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'use letters, digits, ".", "_" or "-"').default('run'),
  out_dir: z.string().min(1).default('runs'),
  seed: z.number().int().min(0).default(0),
  /** "tr": TR scheduling with TALR; "baseline": quantized weights follow the ordinary LR schedule. */
  mode: z.enum(['tr', 'baseline']).default('tr'),
  model: z
    .strictObject({
      name: z.enum(MODEL_NAMES).default('resnet20'),
      /** Resolved from the dataset when left out. */
      in_channels: z.number().int().positive().nullable().default(null),
      num_classes: z.number().int().min(2).nullable().default(null),
      image_size: z.number().int().min(8).nullable().default(null),
      /** A full-precision state dict (or a trqat worker.pt) loaded before quantization; never downloaded. */
      init_checkpoint: z.string().min(1).nullable().default(null),
      /** Your own model instead of `name`: "package.module:function", called with `kwargs`, returning an nn.Module. */
      factory: factoryRef.nullable().default(null),
      kwargs: z.record(z.string(), z.unknown()).default({}),
    })
    .prefault({}),
  quant: z
    .strictObject({
      /** 1..8 (1 = binary), or 32 for a full-precision model (baseline mode only). */
      weight_bits: z.union([bits, z.literal(32)]).default(2),
      /** 1..8, or 32 to leave activations in full precision. */
      act_bits: z.union([bits, z.literal(32)]).default(2),
      first_last_fp: z.boolean().default(true),
      /** More layers kept in full precision: fnmatch patterns of module names, e.g. "*.downsample.*". */
      full_precision: z.array(z.string().min(1)).default([]),
      /** One weight scale per output channel instead of one per layer. */
      per_channel: z.boolean().default(false),
      /** Learnable output scale: "auto" where no normalization follows (the model decides), "on", "off". */
      output_scale: z.enum(['auto', 'on', 'off']).default('auto'),
      /** Initial weight scale: "lsq" (LSQ's rule from mean|W|) or "std" (3 std(W), the released code). */
      weight_scale_init: z.enum(['lsq', 'std']).default('lsq'),
      /** Initial activation scale (first batch): "lsq" or "std" (3 std(x) / sqrt(1 - 2/pi), the released code). */
      act_scale_init: z.enum(['lsq', 'std']).default('lsq'),
      /** LSQ's gradient scale 1/sqrt(numel * beta) on the scales' gradients; the released code has none. */
      lsq_grad_scale: z.boolean().default(true),
      /** Per-layer weight bits {pattern: bits} over weight_bits; the first matching pattern wins. */
      layer_bits: z
        .record(
          layerPattern,
          z
            .number()
            .int('must be a whole number of bits')
            .min(1, 'must be 1..8 bits')
            .max(8, 'must be 1..8 bits (keep a layer in full precision with quant.full_precision instead)'),
        )
        .default({}),
    })
    .prefault({}),
  data: z
    .strictObject({
      name: z.enum(['fashion-mnist', 'cifar10', 'cifar100', 'imagenet', 'synthetic']).default('fashion-mnist'),
      /** Dataset folder (or CIFAR archive); default only for Fashion-MNIST (Debian's package). */
      root: z.string().min(1).nullable().default(null),
      batch_size: z.number().int().positive().default(128),
      eval_batch_size: z.number().int().positive().default(250),
      augment: z.boolean().default(true),
      /** ImageNet crop size. */
      image_size: z.number().int().min(8).default(224),
      /** ImageNet loader processes. */
      num_workers: z.number().int().min(0).default(4),
      train_subset: z.number().int().positive().nullable().default(null),
      test_subset: z.number().int().positive().nullable().default(null),
      synthetic: syntheticSchema.prefault({}),
      /** Your own data instead of `name`: "package.module:function" returning (train_dataset, test_dataset). */
      factory: factoryRef.nullable().default(null),
      kwargs: z.record(z.string(), z.unknown()).default({}),
    })
    .prefault({}),
  optimizer: z
    .strictObject({
      /** sgd, adam, adamw, or any other torch.optim class by name (nadam, rmsprop, adamax, adagrad, ...). */
      name: z
        .string()
        .regex(/^[A-Za-z][A-Za-z0-9_]*$/, 'use an optimizer name such as "sgd", "adam", "adamw", "nadam", "rmsprop"')
        .transform((name) => name.toLowerCase())
        .default('sgd'),
      /** Base LR of the ordinary schedule; default by optimizer: sgd 0.1, adam 1e-3, adamw 3e-4, others 1e-3. */
      lr: z.number().positive().nullable().default(null),
      momentum: z.number().min(0).max(1).default(0.9),
      nesterov: z.boolean().default(false),
      /** Default by optimizer: sgd 5e-4, adamw 0.05, others 0. */
      weight_decay: z.number().min(0).nullable().default(null),
      /** Weight decay of the quantized latent weights; default: weight_decay. */
      quantized_weight_decay: z.number().min(0).nullable().default(null),
      betas: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]).default([0.9, 0.999]),
      eps: z.number().positive().default(1e-8),
      /**
       * The quantizers' learnable scales (activation scales; weight scales too when they train) in a
       * group of their own, with this base LR on the ordinary schedule's shape; null: optimizer.lr.
       */
      scale_lr: z.number().positive().nullable().default(null),
      /** SGD momentum of the scales' group; null: optimizer.momentum. */
      scale_momentum: z.number().min(0).max(1).nullable().default(null),
      /** SGD momentum of BN weights, biases and the other undecayed parameters; null: optimizer.momentum. */
      no_decay_momentum: z.number().min(0).max(1).nullable().default(null),
      /** Extra keyword arguments for the optimizer class. */
      kwargs: z.record(z.string(), z.unknown()).default({}),
    })
    .prefault({}),
  train: z
    .strictObject({
      /** Length of the run: `steps` wins over `epochs` when both are set. */
      epochs: z.number().positive().default(3),
      steps: z.number().int().positive().nullable().default(null),
      /** Evaluate every N steps; null = once per epoch; 0 = only at the end. */
      eval_every: z.number().int().min(0).nullable().default(null),
      /** Checkpoint every N steps; null = at every evaluation; 0 = only at the end. */
      checkpoint_every: z.number().int().min(0).nullable().default(null),
      keep_checkpoints: z.number().int().positive().default(3),
      /** Keep the checkpoint of the best evaluation (checkpoints/best.json) whatever keep_checkpoints prunes. */
      keep_best: z.boolean().default(false),
      /** Progress line every N steps (the metrics log gets every step). */
      log_every: z.number().int().positive().default(20),
      /** Micro-batches per optimizer step: data.batch_size is split into this many (less memory, same step). */
      accumulate_steps: z.number().int().positive().default(1),
      /** Every N steps the worker measures the weights' distance to their nearest transition point; 0 = off. */
      diagnostics_every: z.number().int().min(0).default(100),
      /** Clip the global gradient norm to this value; null = off. */
      grad_clip: z.number().positive().nullable().default(null),
      label_smoothing: z.number().min(0).lt(1).default(0),
      distill: z
        .strictObject({
          /** Full-precision teacher weights; null = no distillation. */
          teacher_checkpoint: z.string().min(1).nullable().default(null),
          /** Teacher architecture; default: model.name. */
          teacher_model: z.enum(MODEL_NAMES).nullable().default(null),
          temperature: z.number().positive().default(1),
          /** loss = (1 - alpha) CE + alpha T^2 KL(teacher || student). */
          alpha: z.number().min(0).max(1).default(1),
        })
        .prefault({}),
    })
    .prefault({}),
  lr_schedule: scheduleSchema.prefault({}),
  tr: z
    .strictObject({
      /**
       * Defaults of the whole method: "paper" (the paper's text) or "released" (the authors' released
       * code; src/config/presets.ts). Only fills what the config leaves unset.
       */
      preset: z.enum(PRESET_NAMES).default('paper'),
      /** R(0) = lambda * sqrt(weight_bits) unless r0 is set. */
      lambda: z.number().positive().default(1e-3),
      r0: z.number().positive().max(1).nullable().default(null),
      schedule: scheduleSchema.prefault({}),
      /** Momentum m of the running TR K(t); default 0.99 (or from the run length with auto). */
      momentum: z.number().min(0).lt(1, 'must be below 1').nullable().default(null),
      /** K(0): a number (the paper's 0), or "r0" to start at R(0) (the released code). */
      k0: z.union([z.number().min(0).max(1), z.literal('r0')]).default(0),
      /** "network": one k, K, U over all quantized weights (the paper); "layer": each layer its own K and U. */
      scope: z.enum(['network', 'layer']).default('network'),
      /** Set eta and m from the run length instead of the paper's defaults (beyond the paper; see README). */
      auto: z.boolean().default(false),
      talr: z
        .strictObject({
          rule: z.enum(['additive', 'multiplicative', 'momentum_multiplicative']).default('additive'),
          /** U(0); default: the optimizer's LR. */
          u0: z.number().min(0).nullable().default(null),
          /** Step size of the additive rule; default: U(0) (or from the run length with auto). */
          eta: z.number().positive().nullable().default(null),
          /** m' of the momentum-multiplicative rule. */
          momentum: z.number().min(0).lt(1, 'must be below 1').default(0.9),
          /** Multiplicative rules: R/K is clamped to [1/max_ratio, max_ratio] (K = 0 would make it infinite); null: no clamp. */
          max_ratio: z.number().gt(1).nullable().default(2),
          /** Multiplicative rules: the ratio is R / (K + eps) (the released code: 1e-8). */
          eps: z.number().min(0).default(0),
        })
        .prefault({}),
      /** Tracking error mean|K - R|/R(0) skips this fraction of the run at its start (K settling). */
      settle_fraction: z.number().min(0).lt(1).default(0.05),
      /** Warn at evaluations when the tracking error exceeds this. */
      warn_tracking_error: z.number().positive().default(0.5),
    })
    .prefault({}),
  worker: z
    .strictObject({
      /** Python interpreter; default: $TRQAT_PYTHON, then ./.venv/bin/python, then python3. */
      python: z.string().min(1).nullable().default(null),
      device: z.string().regex(/^(auto|cpu|cuda(:\d+)?)$/, 'use "auto", "cpu", "cuda" or "cuda:N"').default('auto'),
      /** "local": the controller starts nproc_per_node ranks here; "external": ranks started by torchrun, srun, ... connect. */
      launch: z.enum(['local', 'external']).default('local'),
      /** Data-parallel ranks the controller starts on this machine (one per GPU); torch.distributed when > 1. */
      nproc_per_node: z.number().int().positive().max(1024).default(1),
      /** torch.distributed backend: "auto" is nccl on CUDA, gloo on the CPU. */
      backend: z.enum(['auto', 'nccl', 'gloo']).default('auto'),
      /** Mixed precision on CUDA (ignored on the CPU); true/false from older configs mean fp16/off. */
      amp: z.preprocess((value) => (value === true ? 'fp16' : value === false ? 'off' : value), z.enum(['off', 'bf16', 'fp16'])).default('off'),
      /** Channels-last memory format for convolutions (faster on tensor cores). */
      channels_last: z.boolean().default(false),
      /** torch.compile the model (torch >= 2; ignored with a warning on older torch). */
      compile: z.boolean().default(false),
      /** Synchronised BatchNorm statistics across ranks (CUDA only). */
      sync_bn: z.boolean().default(false),
      threads: z.number().int().positive().nullable().default(null),
      /** Every rank writes ranks/rank-N.jsonl: the counts it measured and the LRs it applied, step by step. */
      trace: z.boolean().default(false),
      startup_timeout_ms: z.number().int().positive().max(MAX_TIMER_MS).default(120_000),
      heartbeat_interval_ms: z.number().int().positive().max(MAX_TIMER_MS).default(1000),
      heartbeat_timeout_ms: z.number().int().positive().max(MAX_TIMER_MS).default(5000),
      /** Ranks that die or hang are restarted from the last checkpoint this often within restart_window_ms (0: never). */
      max_restarts: z.number().int().min(0).default(3),
      restart_window_ms: z.number().int().positive().max(MAX_TIMER_MS).default(3_600_000),
      /** Longest a single command (a training chunk, an evaluation, a save) may take. */
      command_timeout_ms: z.number().int().positive().max(MAX_TIMER_MS).default(3_600_000),
    })
    .prefault({}),
  dashboard: dashboardSchema.prefault({}),
  bridge: z
    .strictObject({
      /** "tcp://127.0.0.1:*" picks a free loopback port; "ipc:///path" for a Unix socket. */
      endpoint: z.string().regex(/^(tcp|ipc):\/\//, 'must start with tcp:// or ipc://').default('tcp://127.0.0.1:*'),
      /** ZeroMQ CURVE encryption and keys: "auto" turns it on for endpoints other machines can reach. */
      curve: z.enum(['auto', 'on', 'off']).default('auto'),
    })
    .prefault({}),
});

export type RawConfig = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
