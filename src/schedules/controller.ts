import { controllerSettings, type ControllerSettings, type ResolvedConfig } from '../config/resolve.js';
import { RunningTr } from './running-tr.js';
import { Schedule } from './schedule.js';
import { makeTalr, type Talr } from './talr.js';
import { TrackingError } from './tracking.js';

/** What the controller decided for one step: logged as is, and the LRs sent to the worker. */
export interface StepDecision {
  step: number;
  /** Measured TR of this step (transitions caused by the previous update), null on a fresh run's first step. */
  k: number | null;
  /** Network-wide running TR (also under the per-layer scope, for comparison with R). */
  K: number;
  /** Target TR; null in baseline mode. */
  R: number | null;
  /** TALR; null in baseline mode. Under the per-layer scope: the mean of the layers' U weighted by size. */
  U: number | null;
  /** One LR for all quantized layers, or one per layer under the per-layer scope. */
  lr_quant: number | number[];
  lr_other: number;
  /** Per-layer scope only: each layer's running TR and TALR. */
  K_layers?: number[];
  U_layers?: number[];
}

/** A type, not an interface, so that it fits the protocol's open map of `lr.state` (src/bridge/protocol.ts). */
export type ControllerState = {
  K: number;
  U: number;
  /** Last step decided, so a resume can check it continues where it stopped. */
  last_step: number;
  K_layers?: number[];
  U_layers?: number[];
  tracking?: { sum: number; count: number };
};

/** One K and one U: the whole network, or one layer under the per-layer scope. */
interface Loop {
  running: RunningTr;
  talr: Talr;
}

/**
 * Owns R(t), K(t), U(t) and the ordinary LR. Per step t (docs/method.md): k(t) from the counts,
 * K(t) = EMA of k, U(t) = TALR(R(t), K(t)); the quantized weights get U(t) (or the ordinary LR in
 * baseline mode), everything else the ordinary LR. Under `tr.scope: layer` each quantized layer
 * has its own K and U against the same target (beyond the paper).
 */
export class TrController {
  readonly target: Schedule;
  readonly lr: Schedule;
  readonly settings: ControllerSettings;
  readonly network: Loop;
  readonly layers: Loop[];
  readonly tracking: TrackingError;
  private lastStep = -1;

  constructor(
    readonly config: ResolvedConfig,
    readonly totalSteps: number,
    /** Number of weights of each quantized layer, in the worker's layer order. */
    readonly layerSizes: readonly number[],
    /** Needed by schedules stepped once per epoch (`interval: epoch`). */
    stepsPerEpoch?: number,
  ) {
    this.target = new Schedule(config.tr.r0, totalSteps, config.tr.schedule, stepsPerEpoch);
    this.lr = new Schedule(config.optimizer.lr, totalSteps, config.lr_schedule, stepsPerEpoch);
    this.settings = controllerSettings(config, totalSteps);
    const loop = (): Loop => ({
      running: new RunningTr(this.settings.momentum, config.tr.k0),
      talr: makeTalr(config.tr.talr, this.settings.eta, config.tr.talr.u0),
    });
    this.network = loop();
    this.layers = config.tr.scope === 'layer' ? layerSizes.map(loop) : [];
    this.tracking = new TrackingError(config.tr.r0, Math.round(config.tr.settle_fraction * totalSteps));
  }

  get quantizedWeights(): number {
    return this.layerSizes.reduce((sum, n) => sum + n, 0);
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
    return this.quantizedWeights > 0 ? total / this.quantizedWeights : 0;
  }

  step(step: number, counts: readonly number[] | null): StepDecision {
    if (step !== this.lastStep + 1) throw new RangeError(`controller expected step ${this.lastStep + 1}, got ${step}`);
    this.lastStep = step;
    const k = counts === null ? null : this.transitionRate(counts);
    if (k !== null) this.network.running.update(k);
    const K = this.network.running.value;
    const lrOther = this.lr.value(step);
    if (this.config.mode === 'baseline') {
      return { step, k, K, R: null, U: null, lr_quant: lrOther, lr_other: lrOther };
    }
    const R = this.target.value(step);
    // Without a measured k (first step of a fresh run) U keeps its initial value U(0).
    const update = (loop: Loop, rate: number | null) => (rate === null ? loop.talr.value : loop.talr.update(R, loop.running.update(rate)));
    if (k !== null) this.tracking.add(step, R, K);
    if (this.layers.length === 0) {
      const U = k === null ? this.network.talr.value : this.network.talr.update(R, K);
      return { step, k, K, R, U, lr_quant: U, lr_other: lrOther };
    }
    const U_layers = this.layers.map((loop, i) => update(loop, counts === null ? null : counts[i]! / this.layerSizes[i]!));
    const U = U_layers.reduce((sum, u, i) => sum + u * this.layerSizes[i]!, 0) / Math.max(1, this.quantizedWeights);
    const K_layers = this.layers.map((loop) => loop.running.value);
    return { step, k, K, R, U, lr_quant: U_layers, lr_other: lrOther, K_layers, U_layers };
  }

  stateDict(): ControllerState {
    const state: ControllerState = {
      ...this.network.running.stateDict(),
      ...this.network.talr.stateDict(),
      last_step: this.lastStep,
      tracking: this.tracking.stateDict(),
    };
    if (this.layers.length > 0) {
      state.K_layers = this.layers.map((loop) => loop.running.value);
      state.U_layers = this.layers.map((loop) => loop.talr.value);
    }
    return state;
  }

  loadStateDict(state: ControllerState): void {
    this.network.running.loadStateDict(state);
    this.network.talr.loadStateDict(state);
    this.lastStep = state.last_step;
    if (state.tracking) this.tracking.loadStateDict(state.tracking);
    if (this.layers.length > 0) {
      if (state.K_layers?.length !== this.layers.length || state.U_layers?.length !== this.layers.length) {
        throw new RangeError(`controller state has no per-layer K and U for ${this.layers.length} layers (was it saved with tr.scope=network?)`);
      }
      this.layers.forEach((loop, i) => {
        loop.running.loadStateDict({ K: state.K_layers![i]! });
        loop.talr.loadStateDict({ U: state.U_layers![i]! });
      });
    }
  }
}
