import type { ResolvedConfig } from '../config/resolve.js';
import { RunningTr } from './running-tr.js';
import { Schedule } from './schedule.js';
import { AdditiveTalr } from './talr.js';

/** What the controller decided for one step: logged as is, and the two LRs sent to the worker. */
export interface StepDecision {
  step: number;
  /** Measured TR of this step (transitions caused by the previous update), null on a fresh run's first step. */
  k: number | null;
  K: number;
  /** Target TR; null in baseline mode. */
  R: number | null;
  /** TALR; null in baseline mode. */
  U: number | null;
  lr_quant: number;
  lr_other: number;
}

export interface ControllerState {
  K: number;
  U: number;
  /** Last step decided, so a resume can check it continues where it stopped. */
  last_step: number;
}

/**
 * Owns R(t), K(t), U(t) and the ordinary LR. Per step t (method.md):
 * k(t) from the counts, K(t) = EMA, U(t) = TALR(R(t), K(t)); the quantized weights get U(t)
 * (or the ordinary LR in baseline mode), everything else the ordinary LR.
 */
export class TrController {
  readonly target: Schedule;
  readonly lr: Schedule;
  readonly running: RunningTr;
  readonly talr: AdditiveTalr;
  private lastStep = -1;

  constructor(
    readonly config: ResolvedConfig,
    readonly totalSteps: number,
    /** Number of weights of each quantized layer, in the worker's layer order. */
    readonly layerSizes: readonly number[],
  ) {
    this.target = new Schedule(config.tr.r0, totalSteps, config.tr.schedule);
    this.lr = new Schedule(config.optimizer.lr, totalSteps, config.lr_schedule);
    this.running = new RunningTr(config.tr.momentum);
    this.talr = new AdditiveTalr(config.tr.talr.eta, config.tr.talr.u0);
  }

  get quantizedWeights(): number {
    return this.layerSizes.reduce((sum, n) => sum + n, 0);
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
    if (k !== null) this.running.update(k);
    const lrOther = this.lr.value(step);
    if (this.config.mode === 'baseline') {
      return { step, k, K: this.running.value, R: null, U: null, lr_quant: lrOther, lr_other: lrOther };
    }
    const R = this.target.value(step);
    // Without a measured k (first step of a fresh run) U keeps its initial value U(0).
    const U = k === null ? this.talr.value : this.talr.update(R, this.running.value);
    return { step, k, K: this.running.value, R, U, lr_quant: U, lr_other: lrOther };
  }

  stateDict(): ControllerState {
    return { ...this.running.stateDict(), ...this.talr.stateDict(), last_step: this.lastStep };
  }

  loadStateDict(state: ControllerState): void {
    this.running.loadStateDict(state);
    this.talr.loadStateDict(state);
    this.lastStep = state.last_step;
  }
}
