import { z } from 'zod';

// Every key's documentation is its `.describe()`: the README's config reference table and
// trqat.schema.json are generated from it (scripts/config-docs.mjs). A default that resolveConfig
// derives from other keys (src/config/resolve.ts) is stated in the description.

/** Shape shared by the target-TR schedule and the ordinary LR schedule. */
export const scheduleSchema = z.strictObject({
  name: z.enum(['cosine', 'linear', 'step', 'constant']).default('cosine').describe('`cosine`, `linear`, `step` or `constant`'),
  warmup_steps: z.number().int().min(0).default(0).describe('steps of linear warm-up from `warmup_start * base` up to `base`'),
  warmup_start: z.number().min(0).max(1).default(0).describe('the value at the start of the warm-up, as a fraction of the base value'),
  final_factor: z.number().min(0).max(1).default(0).describe('`cosine` and `linear`: the value at the end of the run, as a fraction of the base value'),
  milestones: z.array(z.number().int().min(0)).default([]).describe('`step`: multiply by `factor` at each of these steps'),
  factor: z.number().min(0).max(1).default(0.1).describe('`step`: the factor applied at each milestone'),
  interval: z
    .enum(['step', 'epoch'])
    .default('step')
    .describe(
      '`step`: a new value every step. `epoch`: one value per epoch, as a torch scheduler stepped once per epoch (the released code); ' +
        "`warmup_steps` and `milestones` then count epochs, and cosine follows torch's `CosineAnnealingLR` exactly",
    ),
});
export type ScheduleConfig = z.infer<typeof scheduleSchema>;

/**
 * Scheduling as code: a plug-in module instead of a built-in (README, "Scheduling as code"). `module`
 * is a JavaScript module's path, relative to the config file; every other key is passed to the
 * module's factory as its arguments.
 */
export const PLUGIN_MODULE_HINT = 'must be the path of a JavaScript module (.mjs), relative to the config file';
export const pluginRefSchema = z.looseObject({ module: z.string().min(1, PLUGIN_MODULE_HINT) });
export type PluginRef = z.infer<typeof pluginRefSchema>;
export const isPluginRef = (value: unknown): value is PluginRef =>
  value !== null && typeof value === 'object' && typeof (value as Record<string, unknown>).module === 'string';
/** The config keys that take a plug-in. */
export const PLUGIN_KEYS = [
  ['tr', 'schedule'],
  ['tr', 'talr'],
] as const;

const syntheticSchema = z.strictObject({
  train_size: z.number().int().positive().default(512).describe('training samples'),
  test_size: z.number().int().positive().default(256).describe('test samples'),
  image_size: z.number().int().min(8).default(28).describe('height and width of the images'),
  channels: z.number().int().positive().default(1).describe('image channels'),
  num_classes: z.number().int().min(2).default(10).describe('classes'),
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
  enabled: z
    .boolean()
    .default(true)
    .describe('serve the live dashboard during `train`, `resume`, `run` and `serve` (`--dashboard off` sets it false)'),
  host: z
    .string()
    .min(1)
    .default('127.0.0.1')
    .describe('where the dashboard listens (`--dashboard 0.0.0.0:8080`); every request needs the token in the printed URL, also on loopback'),
  port: z.number().int().min(0).max(65535).default(0).describe('the port the dashboard listens on; 0 picks a free one'),
  report: z.boolean().default(true).describe('write `report.html` into the run folder when the run ends'),
});
export type DashboardConfig = z.output<typeof dashboardSchema>;

export const MODEL_NAMES = ['resnet20', 'resnet18', 'resnet34', 'resnet50', 'mobilenetv2', 'reactnet18', 'deit_tiny', 'deit_small'] as const;

/** The dataset names trqat loads itself (python/trqat/data/formats.py; test/config/registries.test.ts checks they agree). */
export const DATASET_NAMES = ['fashion-mnist', 'cifar10', 'cifar100', 'imagenet', 'synthetic'] as const;

/** Your own code instead of trqat's models or datasets: its keyword arguments. */
const factoryKwargs = z.record(z.string(), z.unknown()).default({});

/** The built-in TALR rules' settings (src/schedules/talr.ts). */
export const talrSchema = z.strictObject({
  rule: z
    .enum(['additive', 'multiplicative', 'momentum_multiplicative'])
    .default('additive')
    .describe('`additive` (the paper\'s default), `multiplicative`, `momentum_multiplicative`'),
  u0: z.number().min(0).nullable().default(null).describe('`U(0)`; null: `optimizer.lr`'),
  eta: z
    .number()
    .positive()
    .nullable()
    .default(null)
    .describe(
      'step size of the additive rule; null: `U(0)` (unconfirmed default of the paper; `optimizer.lr` when `U(0)` is 0), or from the run length with `tr.auto`',
    ),
  momentum: z.number().min(0).lt(1, 'must be below 1').default(0.9).describe("`m'` of the momentum-multiplicative rule"),
  max_ratio: z
    .number()
    .gt(1)
    .nullable()
    .default(2)
    .describe('the multiplicative rules clamp `R/K` to `[1/max_ratio, max_ratio]` (`K = 0` would make it infinite); null: no clamp (the released code)'),
  eps: z
    .number()
    .min(0)
    .default(0)
    .describe('the multiplicative rules use `R / (K + eps)` (the released code: `1e-8`); `max_ratio: null` needs `eps > 0`'),
});

/** A TALR plug-in: its `u0` and `eta` are resolved as the built-in rules' are (and passed with its other arguments). */
const talrPluginSchema = pluginRefSchema.extend({ u0: talrSchema.shape.u0, eta: talrSchema.shape.eta });

export type TalrConfig = z.infer<typeof talrSchema>;

export const configSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, 'use letters, digits, ".", "_" or "-"')
    .default('run')
    .describe('prefix of the run folder name'),
  out_dir: z.string().min(1).default('runs').describe('where run folders go'),
  seed: z.number().int().min(0).default(0).describe('seeds data order, augmentation and initialisation'),
  mode: z
    .enum(['tr', 'baseline'])
    .default('tr')
    .describe('`tr`: TR scheduling with TALR. `baseline`: the quantized weights follow the ordinary LR schedule and the weight scales train'),
  model: z
    .strictObject({
      name: z
        .enum(MODEL_NAMES)
        .default('resnet20')
        .describe(
          '`resnet20` (CIFAR, option-A shortcuts), `resnet18`, `resnet34`, `resnet50`, `mobilenetv2` (torchvision definitions), ' +
            '`reactnet18` (binary), `deit_tiny`, `deit_small`',
        ),
      in_channels: z.number().int().positive().nullable().default(null).describe("input channels; null: the dataset's"),
      num_classes: z.number().int().min(2).nullable().default(null).describe("classes; null: the dataset's"),
      image_size: z.number().int().min(8).nullable().default(null).describe("input height and width (DeiT needs it); null: the dataset's"),
      init_checkpoint: z
        .string()
        .min(1)
        .nullable()
        .default(null)
        .describe(
          'a full-precision state dict (or a trqat `worker.pt`) loaded before quantization; weight scales are initialised from those weights. ' +
            'Nothing is ever downloaded',
        ),
      factory: factoryRef
        .nullable()
        .default(null)
        .describe('your own model instead of `name`: `"package.module:function"` called with `kwargs`, returning an `nn.Module` that trqat quantizes'),
      kwargs: factoryKwargs.describe('keyword arguments of `model.factory`'),
    })
    .prefault({})
    .describe('the network'),
  quant: z
    .strictObject({
      weight_bits: z
        .union([bits, z.literal(32)])
        .default(2)
        .describe('1..8 (1 is binary, sign); 32 is a full-precision model (baseline mode only), e.g. to train the starting point'),
      act_bits: z.union([bits, z.literal(32)]).default(2).describe('1..8, or 32 for full-precision activations'),
      first_last_fp: z.boolean().default(true).describe('the first conv and the last linear layer stay in full precision'),
      full_precision: z
        .array(z.string().min(1))
        .default([])
        .describe('more layers kept in full precision: fnmatch patterns of module names, e.g. `["*.downsample.*"]`'),
      per_channel: z.boolean().default(false).describe('one weight scale per output channel instead of one per layer'),
      output_scale: z
        .enum(['auto', 'on', 'off'])
        .default('auto')
        .describe("learnable output scale of quantized layers: `auto` where no normalization follows (the model decides: DeiT's Linear layers), `on`, `off`"),
      weight_scale_init: z
        .enum(['lsq', 'std'])
        .default('lsq')
        .describe('initial weight scale: `lsq`, LSQ\'s rule from `mean|W|` (see "The quantizer"); `std`: `3 std(W)` (the released code)'),
      act_scale_init: z
        .enum(['lsq', 'std'])
        .default('lsq')
        .describe('initial activation scale, from the first training batch: `lsq`, or `std`: `3 std(x) / sqrt(1 - 2/pi)` (the released code)'),
      lsq_grad_scale: z
        .boolean()
        .default(true)
        .describe("LSQ's gradient scale `1/sqrt(numel * beta)` on the scales' gradients; the released code has none (`false`)"),
      layer_bits: z
        .record(
          layerPattern,
          z
            .number()
            .int('must be a whole number of bits')
            .min(1, 'must be 1..8 bits')
            .max(8, 'must be 1..8 bits (keep a layer in full precision with quant.full_precision instead)'),
        )
        .default({})
        .describe(
          'per-layer weight bits over `weight_bits`: `{pattern: bits}` with fnmatch patterns of module names and bits 1..8, e.g. ' +
            '`{"layer1.*": 4, "layer4.*": 1}`; the first pattern that matches a layer wins, and a pattern that matches no quantized layer is an error. ' +
            'On the command line: `--set \'quant.layer_bits={"layer4.*": 4}\'`. With mixed bits, `R(0) = lambda * sum_l n_l sqrt(b_l) / sum_l n_l` ' +
            "(the size-weighted mean of the layers' own `lambda * sqrt(b_l)`, `n_l` their weight counts), recorded in `config.json`",
        ),
    })
    .prefault({})
    .describe('the quantizer (see "The quantizer" in the README)'),
  data: z
    .strictObject({
      name: z
        .enum(DATASET_NAMES)
        .default('fashion-mnist')
        .describe(
          '`fashion-mnist` (IDX files, `.gz` or plain), `cifar10`, `cifar100` (the python-version archive or its extracted folder), ' +
            '`imagenet` (`train/` and `val/` with class folders), `synthetic` (generated, learnable)',
        ),
      root: z
        .string()
        .min(1)
        .nullable()
        .default(null)
        .describe('the dataset folder (or CIFAR archive), required for CIFAR and ImageNet; null for Fashion-MNIST: `/usr/share/datasets/fashion-mnist` (Debian\'s package)'),
      batch_size: z
        .number()
        .int()
        .positive()
        .default(128)
        .describe('the batch of one optimizer step over all ranks: each of N ranks trains on its N-th (a multiple of ranks x `train.accumulate_steps`)'),
      eval_batch_size: z.number().int().positive().default(250).describe('the batch of evaluation'),
      augment: z
        .boolean()
        .default(true)
        .describe('random crop and horizontal flip (ImageNet: RandomResizedCrop), reproducible per step'),
      image_size: z.number().int().min(8).default(224).describe('ImageNet: the crop size'),
      num_workers: z.number().int().min(0).default(4).describe('ImageNet: the loader processes'),
      train_subset: z.number().int().positive().nullable().default(null).describe('use only the first N training samples; null: all'),
      test_subset: z.number().int().positive().nullable().default(null).describe('use only the first N test samples; null: all'),
      synthetic: syntheticSchema.prefault({}).describe('`data.name: synthetic`: the generated, learnable task'),
      factory: factoryRef
        .nullable()
        .default(null)
        .describe(
          'your own data instead of `name`: `"package.module:function"` called with `kwargs`, returning `(train_dataset, test_dataset)` of ' +
            '`(image, label)` pairs; set `model.in_channels` and `model.num_classes` with it',
        ),
      kwargs: factoryKwargs.describe('keyword arguments of `data.factory`'),
    })
    .prefault({})
    .describe('the dataset'),
  optimizer: z
    .strictObject({
      name: z
        .string()
        .regex(/^[A-Za-z][A-Za-z0-9_]*$/, 'use an optimizer name such as "sgd", "adam", "adamw", "nadam", "rmsprop"')
        .transform((name) => name.toLowerCase())
        .default('sgd')
        .describe('`sgd`, `adam`, `adamw` (SGDT, AdamT, AdamWT in TR mode), or any other `torch.optim` class by name: `nadam`, `rmsprop`, `adamax`, `adagrad`, ...'),
      lr: z
        .number()
        .positive()
        .nullable()
        .default(null)
        .describe('base of the ordinary LR schedule; null: by optimizer, sgd 0.1, adam 1e-3, adamw 3e-4, others 1e-3'),
      momentum: z.number().min(0).max(1).default(0.9).describe('SGD momentum'),
      nesterov: z.boolean().default(false).describe("SGD: Nesterov's momentum"),
      weight_decay: z
        .number()
        .min(0)
        .nullable()
        .default(null)
        .describe('on conv and linear weights only (not BN, biases or scales); null: by optimizer, sgd 5e-4, adamw 0.05, others 0'),
      quantized_weight_decay: z
        .number()
        .min(0)
        .nullable()
        .default(null)
        .describe('weight decay of the quantized latent weights (see "Weight decay and TALR"); null: `weight_decay`'),
      betas: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]).default([0.9, 0.999]).describe('Adam and AdamW'),
      eps: z.number().positive().default(1e-8).describe('Adam and AdamW'),
      scale_lr: z
        .number()
        .positive()
        .nullable()
        .default(null)
        .describe(
          'a number puts the learnable quantizer scales (activation scales; weight scales too when they train) in a group of their own, with this ' +
            "base LR on the ordinary schedule's shape and no weight decay (the released code: 0.01); null: they are trained with `lr`",
        ),
      scale_momentum: z
        .number()
        .min(0)
        .max(1)
        .nullable()
        .default(null)
        .describe("SGD momentum of the scales' group (the released code: 0); null: `momentum`"),
      no_decay_momentum: z
        .number()
        .min(0)
        .max(1)
        .nullable()
        .default(null)
        .describe('SGD momentum of BN weights, biases and the other undecayed parameters (the released code: 0); null: `momentum`'),
      kwargs: z.record(z.string(), z.unknown()).default({}).describe('more keyword arguments for the optimizer class (they win over the keys above)'),
    })
    .prefault({})
    .describe('the optimizer: its LR is the ordinary schedule; under TR scheduling the quantized weights get `U(t)` instead'),
  train: z
    .strictObject({
      epochs: z.number().positive().default(3).describe('run length, used when `train.steps` is null'),
      steps: z.number().int().positive().nullable().default(null).describe('run length in steps; wins over `epochs`'),
      eval_every: z
        .number()
        .int()
        .min(0)
        .nullable()
        .default(null)
        .describe('steps between evaluations; 0 evaluates only at the end; null: once per epoch'),
      checkpoint_every: z
        .number()
        .int()
        .min(0)
        .nullable()
        .default(null)
        .describe('steps between checkpoints; 0 checkpoints only at the end; null: at every evaluation'),
      keep_checkpoints: z.number().int().positive().default(3).describe('the newest checkpoints kept'),
      keep_best: z
        .boolean()
        .default(false)
        .describe(
          'also keep the checkpoint of the best evaluation (highest top-1, the earlier on a tie), pointed at by `checkpoints/best.json`, whatever ' +
            '`keep_checkpoints` prunes; every evaluation is then followed by a checkpoint (the best must exist to be kept; the others are pruned as usual). `trqat export --best` exports it',
        ),
      log_every: z.number().int().positive().default(20).describe('steps between progress lines; the metrics log gets every step'),
      accumulate_steps: z
        .number()
        .int()
        .positive()
        .default(1)
        .describe('micro-batches per optimizer step: `data.batch_size` is split into this many (less memory, the same step)'),
      diagnostics_every: z
        .number()
        .int()
        .min(0)
        .default(100)
        .describe(
          "steps between measurements of the weights' distance to their nearest transition point (`dist` in the metrics); 0 = off. " +
            'It costs about one transition count per measurement',
        ),
      grad_clip: z.number().positive().nullable().default(null).describe('clip the global gradient norm to this value; null: no clipping'),
      label_smoothing: z.number().min(0).lt(1).default(0).describe('label smoothing of the cross-entropy loss'),
      distill: z
        .strictObject({
          teacher_checkpoint: z
            .string()
            .min(1)
            .nullable()
            .default(null)
            .describe('full-precision weights of the teacher; null: no distillation'),
          teacher_model: z.enum(MODEL_NAMES).nullable().default(null).describe("the teacher's architecture; null: `model.name`"),
          temperature: z.number().positive().default(1).describe('T, the temperature of both softmaxes'),
          alpha: z.number().min(0).max(1).default(1).describe('loss = (1 - alpha) CE + alpha T^2 KL(teacher || student)'),
        })
        .prefault({})
        .describe("knowledge distillation from a full-precision teacher (KL on logits, as ReActNet's distributional loss)"),
    })
    .prefault({})
    .describe('the run: its length, evaluations, checkpoints and loss'),
  lr_schedule: scheduleSchema.prefault({}).describe('the ordinary LR schedule, for every parameter but the quantized weights under TR scheduling'),
  tr: z
    .strictObject({
      preset: z
        .enum(PRESET_NAMES)
        .default('paper')
        .describe(
          'the set of defaults: `paper` (the paper\'s text) or `released` (the authors\' released code); see "Two sets of defaults" in the README. ' +
            'It fills only what the config leaves unset',
        ),
      lambda: z
        .number()
        .positive()
        .default(1e-3)
        .describe('`R(0) = lambda * sqrt(weight_bits)` (mixed bits: see `quant.layer_bits`); the paper searches {5e-3, 1e-3, 5e-4, 1e-4}'),
      r0: z.number().positive().max(1).nullable().default(null).describe('`R(0)` set directly; null: from `lambda`'),
      schedule: z
        .union([pluginRefSchema, scheduleSchema])
        .prefault({})
        .describe('the shape of `R(t)`; or `{module: ./my-schedule.mjs, ...args}`, your own (README, "Scheduling as code")'),
      momentum: z
        .number()
        .min(0)
        .lt(1, 'must be below 1')
        .nullable()
        .default(null)
        .describe('`m` of the running TR `K(t)`; null: 0.99 (unconfirmed default of the paper), or from the run length with `tr.auto`'),
      k0: z
        .union([z.number().min(0).max(1), z.literal('r0')])
        .default(0)
        .describe('`K(0)`: a number (the paper\'s 0), or `r0` to start at `R(0)` (the released code)'),
      scope: z
        .enum(['network', 'layer'])
        .default('network')
        .describe(
          '`network`: one `k`, `K`, `U` over all quantized weights (the paper). `layer`: each quantized layer its own `K` and `U` against the same ' +
            'target (beyond the paper)',
        ),
      auto: z.boolean().default(false).describe('derive `m` and `eta` from the run length (beyond the paper; see "TR control" in the README)'),
      talr: z
        .union([talrPluginSchema, talrSchema])
        .prefault({})
        .describe('the transition-adaptive LR `U(t)`; or `{module: ./my-rule.mjs, ...args}`, your own (README, "Scheduling as code"; `u0` and `eta` are resolved for it too)'),
      settle_fraction: z
        .number()
        .min(0)
        .lt(1)
        .default(0.05)
        .describe('the tracking error `mean|K - R|/R(0)` skips this fraction of the run at its start (K settling)'),
      warn_tracking_error: z.number().positive().default(0.5).describe('warn at evaluations when the tracking error is above this'),
    })
    .prefault({})
    .describe('TR scheduling: the target `R(t)`, the running TR `K(t)` and the TALR `U(t)`'),
  worker: z
    .strictObject({
      python: z
        .string()
        .min(1)
        .nullable()
        .default(null)
        .describe('the interpreter that runs the worker; null: `$TRQAT_PYTHON`, then `.venv/bin/python`, then `python3`'),
      device: z
        .string()
        .regex(/^(auto|cpu|cuda(:\d+)?)$/, 'use "auto", "cpu", "cuda" or "cuda:N"')
        .default('auto')
        .describe('`auto` (CUDA if available, `cuda:LOCAL_RANK` per rank), `cpu`, `cuda` or `cuda:N`'),
      launch: z
        .enum(['local', 'external'])
        .default('local')
        .describe("`local`: the controller starts the ranks; `external`: ranks started by torchrun, srun or any launcher connect with the run's `auth.json`"),
      nproc_per_node: z
        .number()
        .int()
        .positive()
        .max(1024)
        .default(1)
        .describe('data-parallel ranks the controller starts on this machine (one per GPU), with torch.distributed when more than 1'),
      backend: z.enum(['auto', 'nccl', 'gloo']).default('auto').describe('torch.distributed backend: `auto` is `nccl` on CUDA, `gloo` on the CPU'),
      amp: z
        .preprocess((value) => (value === true ? 'fp16' : value === false ? 'off' : value), z.enum(['off', 'bf16', 'fp16']))
        .default('off')
        .describe('mixed precision on CUDA (ignored on the CPU): `bf16`, `fp16` (with a gradient scaler) or `off`; `true`/`false` from older configs mean `fp16`/`off`'),
      channels_last: z.boolean().default(false).describe('channels-last memory format for convolutions (faster on tensor cores)'),
      compile: z.boolean().default(false).describe('`torch.compile` the model (torch >= 2; ignored with a warning on older torch)'),
      sync_bn: z.boolean().default(false).describe('synchronised BatchNorm statistics across ranks (CUDA only)'),
      threads: z.number().int().positive().nullable().default(null).describe('torch CPU threads per rank; null: the cores divided by the ranks'),
      trace: z
        .boolean()
        .default(false)
        .describe('every rank writes `ranks/rank-N.jsonl`: the counts it measured and the LRs it applied, step by step'),
      startup_timeout_ms: z
        .number()
        .int()
        .positive()
        .max(MAX_TIMER_MS)
        .default(120_000)
        .describe('limit for the handshake and for building the model and data'),
      heartbeat_interval_ms: z.number().int().positive().max(MAX_TIMER_MS).default(1000).describe('how often every session sends a heartbeat'),
      heartbeat_timeout_ms: z
        .number()
        .int()
        .positive()
        .max(MAX_TIMER_MS)
        .default(5000)
        .describe('a silent session is declared dead after this (at least twice `heartbeat_interval_ms`)'),
      max_restarts: z
        .number()
        .int()
        .min(0)
        .default(3)
        .describe('ranks that die or hang are restarted from the last checkpoint this often within `restart_window_ms`; 0: never'),
      restart_window_ms: z.number().int().positive().max(MAX_TIMER_MS).default(3_600_000).describe('the window of `max_restarts`'),
      command_timeout_ms: z
        .number()
        .int()
        .positive()
        .max(MAX_TIMER_MS)
        .default(3_600_000)
        .describe('longest a single step, evaluation or save may take'),
    })
    .prefault({})
    .describe('the worker processes: where and how the ranks run; a resume may change these'),
  dashboard: dashboardSchema.prefault({}).describe('the live dashboard and the report (see "Seeing the run")'),
  bridge: z
    .strictObject({
      endpoint: z
        .string()
        .regex(/^(tcp|ipc):\/\//, 'must start with tcp:// or ipc://')
        .default('tcp://127.0.0.1:*')
        .describe('where the controller listens: `tcp://127.0.0.1:*` picks a free loopback port, `ipc:///path` a Unix socket, `tcp://0.0.0.0:PORT` for ranks on other machines'),
      curve: z
        .enum(['auto', 'on', 'off'])
        .default('auto')
        .describe('ZeroMQ CURVE encryption with keys made for the run: `auto` turns it on for endpoints other machines can reach; `off` there is refused'),
    })
    .prefault({})
    .describe('the ZeroMQ socket between the controller and its sessions'),
});

export type RawConfig = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
