import { isPluginRef, type ScheduleConfig, type TalrConfig } from '../config/schema.js';
import { valueProblem } from './decision.js';
import { callPlugin, PluginError, type ControllerInput, type ControllerOutput, type ControllerPlugin, type PluginContext, type PluginIdentity, type PluginSource, type Plugins, type TalrPlugin, type TrSchedulePlugin } from './plugin.js';
import { RunningTr } from './running-tr.js';
import { Schedule } from './schedule.js';
import { makeTalr } from './talr.js';

// The built-in schedules and TALR rules as plug-ins, and the built-in controller that combines a
// schedule and a rule: TrController knows only plug-ins.

const builtin = (role: PluginIdentity['role'], name: string): PluginIdentity => ({ role, name, module: null, sha256: null });

/** `tr.schedule`'s shape (cosine, linear, step, constant) with base `R(0)`: stateless. */
export function builtinSchedule(config: ScheduleConfig): PluginSource<'schedule'> {
  return {
    identity: builtin('schedule', `built-in ${config.name}`),
    create: (context): TrSchedulePlugin => {
      const schedule = new Schedule(context.config.tr.r0, context.totalSteps, config, context.stepsPerEpoch);
      return { target: (step) => schedule.value(step) };
    },
  };
}

/**
 * `tr.talr.rule`: under `tr.scope: network` one U from the network's K, under `layer` one per layer
 * from each layer's K. Without a measured k (a fresh run's first step) U keeps its value, U(0).
 */
export function builtinTalr(config: TalrConfig): PluginSource<'talr'> {
  return {
    identity: builtin('talr', `built-in ${config.rule}`),
    create: (context): TalrPlugin => {
      const make = () => makeTalr(config, context.eta, context.config.tr.talr.u0);
      if (context.config.tr.scope === 'network') {
        const talr = make();
        return {
          update: ({ k, R, K }) => (k === null ? talr.value : talr.update(R, K)),
          stateDict: () => talr.stateDict(),
          loadStateDict: (state) => talr.loadStateDict(state as { U: number }),
        };
      }
      const layers = context.layerSizes.map(make);
      return {
        update: ({ k, R, K_layers }) => layers.map((talr, i) => (k === null ? talr.value : talr.update(R, K_layers![i]!))),
        stateDict: () => ({ U_layers: layers.map((talr) => talr.value) }),
        loadStateDict: (state) => {
          const values = (state as { U_layers?: number[] }).U_layers;
          if (values?.length !== layers.length) throw new RangeError(`controller state has no per-layer U for ${layers.length} layers (was it saved with tr.scope=network?)`);
          layers.forEach((talr, i) => talr.loadStateDict({ U: values[i]! }));
        },
      };
    },
  };
}

/** The built-in controller's state: its running TRs and its plug-ins' states. */
interface ComposedState {
  K: number;
  K_layers?: number[];
  schedule?: unknown;
  talr?: unknown;
  /** Checkpoints of trqat before plug-ins: the built-in rule's U, flat. */
  U?: number;
  U_layers?: number[];
}

/**
 * The built-in decision (docs/method.md): k from the counts, K = EMA of k, R from the schedule
 * plug-in, U from the TALR plug-in; in baseline mode the quantized weights get the ordinary LR.
 * Under `tr.scope: layer` every layer also has its own running TR, which the TALR rule sees.
 */
export class ComposedController implements ControllerPlugin {
  readonly name = 'built-in';
  private readonly network: RunningTr;
  private readonly layers: RunningTr[];
  private readonly schedule: TrSchedulePlugin;
  private readonly talr: TalrPlugin;

  constructor(
    private readonly context: PluginContext,
    private readonly scheduleSource: PluginSource<'schedule'>,
    private readonly talrSource: PluginSource<'talr'>,
  ) {
    const { k0, scope } = context.config.tr;
    this.network = new RunningTr(context.momentum, k0);
    this.layers = scope === 'layer' ? context.layerSizes.map(() => new RunningTr(context.momentum, k0)) : [];
    this.schedule = scheduleSource.create(context);
    this.talr = talrSource.create(context);
  }

  decide(input: ControllerInput): ControllerOutput {
    const { step, total, k, counts, rates, lrOther } = input;
    if (k !== null) this.network.update(k);
    const K = this.network.value;
    if (this.context.config.mode === 'baseline') return { K, R: null, U: null, lr_quant: lrOther, lr_other: lrOther };
    const R = callPlugin(this.scheduleSource.identity, step, 'target()', () => this.schedule.target(step, total, this.context));
    if (typeof R !== 'number') throw new PluginError(this.scheduleSource.identity, step, `target() returned ${typeof R}, not a number`);
    if (rates !== null) this.layers.forEach((running, i) => running.update(rates[i]!));
    const K_layers = this.layers.length > 0 ? this.layers.map((running) => running.value) : null;
    const identity = this.talrSource.identity;
    const out = callPlugin(identity, step, 'update()', () => this.talr.update({ step, total, R, k, K, counts, rates, K_layers }, this.context));
    if (typeof out !== 'number' && !Array.isArray(out)) throw new PluginError(identity, step, `update() returned ${typeof out}: return U, a number, or one U per quantized layer`);
    const problem = valueProblem('U', out, this.context.layerSizes.length);
    if (problem !== null) throw new PluginError(identity, step, `update() returned ${problem}`);
    if (typeof out === 'number') return { K, R, U: out, lr_quant: out, lr_other: lrOther, ...(K_layers ? { K_layers } : {}) };
    const U_layers = [...out];
    const sizes = this.context.layerSizes;
    const weights = sizes.reduce((sum, n) => sum + n, 0);
    const U = U_layers.reduce((sum, u, i) => sum + u * sizes[i]!, 0) / Math.max(1, weights);
    return { K, R, U, lr_quant: U_layers, lr_other: lrOther, ...(K_layers ? { K_layers } : {}), U_layers };
  }

  stateDict(): ComposedState {
    const state: ComposedState = { K: this.network.value };
    if (this.layers.length > 0) state.K_layers = this.layers.map((running) => running.value);
    const schedule = this.schedule.stateDict?.();
    if (schedule !== undefined) state.schedule = schedule;
    const talr = this.talr.stateDict?.();
    if (talr !== undefined) state.talr = talr;
    return state;
  }

  loadStateDict(raw: unknown): void {
    const state = raw as ComposedState;
    this.network.loadStateDict({ K: state.K });
    if (this.layers.length > 0) {
      if (state.K_layers?.length !== this.layers.length) {
        throw new RangeError(`controller state has no per-layer K and U for ${this.layers.length} layers (was it saved with tr.scope=network?)`);
      }
      this.layers.forEach((running, i) => running.loadStateDict({ K: state.K_layers![i]! }));
    }
    if (state.schedule !== undefined) this.schedule.loadStateDict?.(state.schedule);
    // A checkpoint of trqat before plug-ins holds the built-in rule's U flat.
    const talr = state.talr ?? (this.layers.length > 0 ? { U_layers: state.U_layers } : { U: state.U });
    callPlugin(this.talrSource.identity, null, 'loadStateDict()', () => this.talr.loadStateDict?.(talr));
  }
}

/** The run's decision-maker: a controller plug-in, or the built-in one over the schedule and rule in force. */
export function makeController(context: PluginContext, plugins: Plugins): { plugin: ControllerPlugin; identity: PluginIdentity } {
  if (plugins.controller) return { plugin: plugins.controller.create(context), identity: plugins.controller.identity };
  const { schedule, talr } = context.config.tr;
  const scheduleSource = plugins.schedule ?? (isPluginRef(schedule) ? missing('tr.schedule', schedule.module) : builtinSchedule(schedule));
  const talrSource = plugins.talr ?? (isPluginRef(talr) ? missing('tr.talr', talr.module) : builtinTalr(talr));
  return { plugin: new ComposedController(context, scheduleSource, talrSource), identity: builtin('controller', 'built-in') };
}

function missing(key: string, module: string): never {
  throw new RangeError(`${key}.module (${module}) was not loaded: call loadPlugins(config) and pass its plug-ins to the controller`);
}
