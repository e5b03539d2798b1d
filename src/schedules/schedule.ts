import type { ScheduleConfig } from '../config/schema.js';

/**
 * An LR-style schedule: `base * factor(t)` for step t of a run of `totalSteps` steps.
 * Stateless: the step is passed in, so resuming needs no schedule state.
 * The same family serves the target TR R(t) and the ordinary learning rate.
 *
 * With `interval: epoch` the value changes once per epoch (`stepsPerEpoch` steps), as a torch
 * scheduler stepped once per epoch; warm-up and milestones then count epochs, and the run lasts
 * round(totalSteps / stepsPerEpoch) epochs (torch's T_max).
 */
export class Schedule {
  /** Run steps per schedule step: 1, or the steps of an epoch. */
  private readonly unit: number;
  /** Length of the run in schedule steps. */
  private readonly length: number;
  /** Per-epoch cosine: the values torch's CosineAnnealingLR gives, epoch by epoch. */
  private readonly torchCosine: number[] | null;

  constructor(
    readonly base: number,
    readonly totalSteps: number,
    readonly config: ScheduleConfig,
    stepsPerEpoch?: number,
  ) {
    if (!(totalSteps > 0)) throw new RangeError(`schedule needs totalSteps > 0, got ${totalSteps}`);
    if (config.interval === 'epoch') {
      if (stepsPerEpoch === undefined || !(stepsPerEpoch > 0)) {
        throw new RangeError(`a schedule with interval "epoch" needs the steps per epoch, got ${stepsPerEpoch}`);
      }
      this.unit = stepsPerEpoch;
      this.length = Math.max(1, Math.round(totalSteps / stepsPerEpoch));
    } else {
      this.unit = 1;
      this.length = totalSteps;
    }
    this.torchCosine = config.interval === 'epoch' && config.name === 'cosine' ? this.torchCosineValues() : null;
  }

  value(step: number): number {
    const t = Math.floor(step / this.unit);
    if (this.torchCosine && t >= this.config.warmup_steps) return this.torchCosine[Math.min(t, this.length) - this.config.warmup_steps]!;
    return this.base * this.factor(step);
  }

  factor(step: number): number {
    const t = Math.floor(step / this.unit);
    const { warmup_steps: warmup, warmup_start: start } = this.config;
    if (t < warmup) return start + ((1 - start) * t) / warmup;
    return this.decay(t - warmup, Math.max(1, this.length - warmup));
  }

  private decay(step: number, span: number): number {
    const { name, final_factor: final } = this.config;
    const progress = Math.min(1, step / span);
    switch (name) {
      case 'cosine':
        return final + (1 - final) * 0.5 * (1 + Math.cos(Math.PI * progress));
      case 'linear':
        return 1 - (1 - final) * progress;
      case 'constant':
        return 1;
      case 'step': {
        const passed = this.config.milestones.filter((milestone) => step + this.config.warmup_steps >= milestone).length;
        return this.config.factor ** passed;
      }
    }
  }

  /**
   * torch's CosineAnnealingLR stepped once per epoch (T_max = the decay's epochs, eta_min =
   * final_factor * base). torch computes it recursively from the previous epoch's LR, not from its
   * closed form; the two differ by rounding only (~1e-16 relative), and this follows torch's.
   */
  private torchCosineValues(): number[] {
    const tMax = Math.max(1, this.length - this.config.warmup_steps);
    const etaMin = this.config.final_factor * this.base;
    const values = [this.base];
    for (let e = 1; e <= tMax; e++) {
      const lr = values[e - 1]!;
      values.push(((1 + Math.cos((Math.PI * e) / tMax)) / (1 + Math.cos((Math.PI * (e - 1)) / tMax))) * (lr - etaMin) + etaMin);
    }
    return values;
  }
}
