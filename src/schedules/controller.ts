import { controllerSettings, type ControllerSettings, type ResolvedConfig } from '../config/resolve.js';
import { makeController } from './builtins.js';
import { decisionProblem, type StepDecision } from './decision.js';
import { callPlugin, identities, PluginError, type ControllerPlugin, type PluginContext, type PluginIdentity, type Plugins } from './plugin.js';
import { Schedule } from './schedule.js';
import { TrackingError } from './tracking.js';

/** A type, not an interface, so that it fits the protocol's open map of `lr.state` (src/bridge/protocol.ts). */
export type ControllerState = {
  K: number;
  U: number;
  /** Last step decided, so a resume can check it continues where it stopped. */
  last_step: number;
  K_layers?: number[];
  U_layers?: number[];
  tracking?: { sum: number; count: number };
  /** The controller plug-in's state (the built-in one: its running TRs, its schedule's and rule's states). */
  plugin_state?: unknown;
  /** Which code decided (module path and sha256): a resume checks it is the same. */
  plugins?: PluginIdentity[];
};

/**
 * Owns the decision of every step: asks the controller plug-in (the built-in one combines R(t) of
 * the schedule plug-in, K(t) = EMA of k and U(t) of the TALR plug-in; docs/method.md), checks what it
 * decided before anything is sent (a NaN, infinite or negative number ends the run with a
 * PluginError naming the plug-in and the step), and keeps the tracking error and the step order.
 */
export class TrController {
  readonly lr: Schedule;
  readonly settings: ControllerSettings;
  readonly tracking: TrackingError;
  readonly context: PluginContext;
  /** The plug-ins in force (the built-in ones included): run.json and checkpoints record them. */
  readonly plugins: PluginIdentity[];
  private readonly decider: ControllerPlugin;
  private readonly identity: PluginIdentity;
  private readonly quantized: number;
  private lastStep = -1;
  private K: number;
  private U: number;
  private K_layers: number[] | undefined;
  private U_layers: number[] | undefined;

  constructor(
    readonly config: ResolvedConfig,
    readonly totalSteps: number,
    /** Number of weights of each quantized layer, in the worker's layer order. */
    readonly layerSizes: readonly number[],
    /** Needed by schedules stepped once per epoch (`interval: epoch`). */
    stepsPerEpoch?: number,
    /** Plug-ins loaded by loadPlugins(); a module in the config must have been loaded. */
    plugins: Plugins = {},
  ) {
    this.lr = new Schedule(config.optimizer.lr, totalSteps, config.lr_schedule, stepsPerEpoch);
    this.settings = controllerSettings(config, totalSteps);
    this.quantized = layerSizes.reduce((sum, n) => sum + n, 0);
    this.context = Object.freeze({ totalSteps, stepsPerEpoch: stepsPerEpoch ?? totalSteps, layerSizes, config, ...this.settings });
    const { plugin, identity } = makeController(this.context, plugins);
    this.decider = plugin;
    this.identity = identity;
    this.plugins = identities(plugins);
    this.tracking = new TrackingError(config.tr.r0, Math.round(config.tr.settle_fraction * totalSteps));
    this.K = config.tr.k0;
    this.U = config.tr.talr.u0;
  }

  get quantizedWeights(): number {
    return this.quantized;
  }

  /** Mean |K - R| / R(0) after the settling window; null before it or in baseline mode. */
  get trackingError(): number | null {
    return this.tracking.value;
  }

  /** k(t): the network-wide ratio, total transitions over total quantized weights. */
  transitionRate(counts: readonly number[]): number {
    if (counts.length !== this.layerSizes.length) {
      throw new RangeError(`expected ${this.layerSizes.length} per-layer counts, got ${counts.length}`);
    }
    const total = counts.reduce((sum, n) => sum + n, 0);
    return this.quantized > 0 ? total / this.quantized : 0;
  }

  step(step: number, counts: readonly number[] | null): StepDecision {
    if (step !== this.lastStep + 1) throw new RangeError(`controller expected step ${this.lastStep + 1}, got ${step}`);
    const k = counts === null ? null : this.transitionRate(counts);
    const rates = counts === null ? null : counts.map((n, i) => n / this.layerSizes[i]!);
    const input = { step, total: this.totalSteps, k, counts, rates, lrOther: this.lr.value(step) };
    const out = callPlugin(this.identity, step, 'decide()', () => this.decider.decide(input, this.context));
    const decision = { step, k, ...out } as StepDecision;
    const problem = decisionProblem(decision, this.layerSizes.length);
    if (problem !== null) throw new PluginError(this.identity, step, `it decided ${problem}`);
    this.lastStep = step;
    if (k !== null && decision.R !== null) this.tracking.add(step, decision.R, decision.K);
    this.K = decision.K;
    if (decision.U !== null) this.U = decision.U;
    this.K_layers = decision.K_layers;
    this.U_layers = decision.U_layers;
    return decision;
  }

  stateDict(): ControllerState {
    const state: ControllerState = { K: this.K, U: this.U, last_step: this.lastStep, tracking: this.tracking.stateDict() };
    if (this.K_layers) state.K_layers = this.K_layers;
    if (this.U_layers) state.U_layers = this.U_layers;
    const plugin = this.decider.stateDict?.();
    if (plugin !== undefined) state.plugin_state = plugin;
    if (this.plugins.length > 0) state.plugins = this.plugins;
    return state;
  }

  loadStateDict(state: ControllerState): void {
    // A state of trqat before plug-ins is the built-in controller's, flat.
    const plugin = state.plugin_state ?? state;
    callPlugin(this.identity, null, 'loadStateDict()', () => this.decider.loadStateDict?.(plugin));
    this.lastStep = state.last_step;
    this.K = state.K;
    this.U = state.U;
    this.K_layers = state.K_layers;
    this.U_layers = state.U_layers;
    if (state.tracking) this.tracking.loadStateDict(state.tracking);
  }
}
