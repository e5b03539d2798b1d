import type { ScheduleConfig } from '../config/schema.js';

/**
 * An LR-style schedule: `base * factor(t)` for step t of a run of `totalSteps` steps.
 * Stateless: the step is passed in, so resuming needs no schedule state.
 * The same family serves the target TR R(t) and the ordinary learning rate.
 */
export class Schedule {
  constructor(
    readonly base: number,
    readonly totalSteps: number,
    readonly config: ScheduleConfig,
  ) {
    if (!(totalSteps > 0)) throw new RangeError(`schedule needs totalSteps > 0, got ${totalSteps}`);
  }

  value(step: number): number {
    return this.base * this.factor(step);
  }

  factor(step: number): number {
    const { warmup_steps: warmup, warmup_start: start } = this.config;
    if (step < warmup) return start + ((1 - start) * step) / warmup;
    return this.decay(step - warmup, Math.max(1, this.totalSteps - warmup));
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
}
