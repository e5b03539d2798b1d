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
});
export type ScheduleConfig = z.infer<typeof scheduleSchema>;

const syntheticSchema = z.strictObject({
  train_size: z.number().int().positive().default(512),
  test_size: z.number().int().positive().default(256),
  image_size: z.number().int().min(8).default(28),
  channels: z.number().int().positive().default(1),
  num_classes: z.number().int().min(2).default(10),
});

const bits = z.number().int().min(1).max(8);

export const configSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'use letters, digits, ".", "_" or "-"').default('run'),
  out_dir: z.string().min(1).default('runs'),
  seed: z.number().int().min(0).default(0),
  /** "tr": TR scheduling with TALR; "baseline": quantized weights follow the ordinary LR schedule. */
  mode: z.enum(['tr', 'baseline']).default('tr'),
  model: z
    .strictObject({
      name: z.enum(['resnet20']).default('resnet20'),
      /** Resolved from the dataset when left out. */
      in_channels: z.number().int().positive().nullable().default(null),
      num_classes: z.number().int().min(2).nullable().default(null),
    })
    .prefault({}),
  quant: z
    .strictObject({
      weight_bits: bits.default(2),
      /** 1..8, or 32 to leave activations in full precision. */
      act_bits: z.union([bits, z.literal(32)]).default(2),
      first_last_fp: z.boolean().default(true),
      /** One weight scale per output channel instead of one per layer. */
      per_channel: z.boolean().default(false),
    })
    .prefault({}),
  data: z
    .strictObject({
      name: z.enum(['fashion-mnist', 'synthetic']).default('fashion-mnist'),
      root: z.string().min(1).default('/usr/share/datasets/fashion-mnist'),
      batch_size: z.number().int().positive().default(128),
      eval_batch_size: z.number().int().positive().default(250),
      augment: z.boolean().default(true),
      train_subset: z.number().int().positive().nullable().default(null),
      test_subset: z.number().int().positive().nullable().default(null),
      synthetic: syntheticSchema.prefault({}),
    })
    .prefault({}),
  optimizer: z
    .strictObject({
      name: z.enum(['sgd', 'adam', 'adamw']).default('sgd'),
      /** Base LR of the ordinary schedule; default by optimizer: sgd 0.1, adam 1e-3, adamw 3e-4. */
      lr: z.number().positive().nullable().default(null),
      momentum: z.number().min(0).max(1).default(0.9),
      nesterov: z.boolean().default(false),
      /** Default by optimizer: sgd 5e-4, adam 0, adamw 0.05. */
      weight_decay: z.number().min(0).nullable().default(null),
      betas: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]).default([0.9, 0.999]),
      eps: z.number().positive().default(1e-8),
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
      /** Progress line every N steps (the metrics log gets every step). */
      log_every: z.number().int().positive().default(20),
    })
    .prefault({}),
  lr_schedule: scheduleSchema.prefault({}),
  tr: z
    .strictObject({
      /** R(0) = lambda * sqrt(weight_bits) unless r0 is set. */
      lambda: z.number().positive().default(1e-3),
      r0: z.number().positive().max(1).nullable().default(null),
      schedule: scheduleSchema.prefault({}),
      /** Momentum m of the running TR K(t). */
      momentum: z.number().min(0).max(1).lt(1, 'must be below 1').default(0.99),
      talr: z
        .strictObject({
          rule: z.enum(['additive']).default('additive'),
          /** U(0); default: the optimizer's LR. */
          u0: z.number().min(0).nullable().default(null),
          /** Step size of the additive rule; default: U(0). */
          eta: z.number().positive().nullable().default(null),
        })
        .prefault({}),
    })
    .prefault({}),
  worker: z
    .strictObject({
      /** Python interpreter; default: $TRQAT_PYTHON, then ./.venv/bin/python, then python3. */
      python: z.string().min(1).nullable().default(null),
      device: z.string().regex(/^(auto|cpu|cuda(:\d+)?)$/, 'use "auto", "cpu", "cuda" or "cuda:N"').default('auto'),
      amp: z.boolean().default(false),
      threads: z.number().int().positive().nullable().default(null),
      startup_timeout_ms: z.number().int().positive().default(120_000),
      heartbeat_interval_ms: z.number().int().positive().default(1000),
      heartbeat_timeout_ms: z.number().int().positive().default(5000),
      /** Longest a single command (a training chunk, an evaluation, a save) may take. */
      command_timeout_ms: z.number().int().positive().default(3_600_000),
    })
    .prefault({}),
  bridge: z
    .strictObject({
      /** "tcp://127.0.0.1:*" picks a free loopback port; "ipc:///path" for a Unix socket. */
      endpoint: z.string().regex(/^(tcp|ipc):\/\//, 'must start with tcp:// or ipc://').default('tcp://127.0.0.1:*'),
    })
    .prefault({}),
});

export type RawConfig = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
