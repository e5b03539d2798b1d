import type { TalrConfig } from '../config/schema.js';

/**
 * A transition-adaptive learning rate U(t): raises U when the running TR K lags the target R,
 * lowers it when K exceeds R, holds it when they are equal (docs/method.md, "Other TALR rules").
 */
export interface Talr {
  readonly value: number;
  update(target: number, running: number): number;
  stateDict(): { U: number };
  loadStateDict(state: { U: number }): void;
}

abstract class TalrBase implements Talr {
  constructor(protected current: number) {}

  get value(): number {
    return this.current;
  }

  abstract update(target: number, running: number): number;

  stateDict(): { U: number } {
    return { U: this.current };
  }

  loadStateDict(state: { U: number }): void {
    this.current = state.U;
  }
}

/** The paper's default: U(t) = max(0, U(t-1) + eta * (R(t) - K(t))). */
export class AdditiveTalr extends TalrBase {
  constructor(
    readonly eta: number,
    u0: number,
  ) {
    super(u0);
  }

  update(target: number, running: number): number {
    this.current = Math.max(0, this.current + this.eta * (target - running));
    return this.current;
  }
}

/**
 * R / (K + eps), clamped to [1/maxRatio, maxRatio]; with K + eps = 0 and R > 0 the largest raise.
 * maxRatio null: no clamp (the released code; eps > 0 keeps it finite).
 */
function ratio(target: number, running: number, maxRatio: number | null, eps: number): number {
  const denominator = running + eps;
  if (maxRatio === null) return target / denominator;
  if (denominator <= 0) return target > 0 ? maxRatio : 1;
  return Math.min(maxRatio, Math.max(1 / maxRatio, target / denominator));
}

/** U(t) = U(t-1) * R(t) / K(t): fast, sensitive to outliers of K. */
export class MultiplicativeTalr extends TalrBase {
  constructor(
    readonly maxRatio: number | null,
    u0: number,
    readonly eps = 0,
  ) {
    super(u0);
  }

  update(target: number, running: number): number {
    this.current *= ratio(target, running, this.maxRatio, this.eps);
    return this.current;
  }
}

/**
 * U(t) = m' U(t-1) + (1 - m') U(t-1) R(t) / K(t): the multiplicative rule, smoothed. The released
 * code keeps a scale c with U = U(0) c and updates c the same way; the two agree to rounding.
 */
export class MomentumMultiplicativeTalr extends TalrBase {
  constructor(
    readonly momentum: number,
    readonly maxRatio: number | null,
    u0: number,
    readonly eps = 0,
  ) {
    super(u0);
  }

  update(target: number, running: number): number {
    const r = ratio(target, running, this.maxRatio, this.eps);
    this.current = this.momentum * this.current + (1 - this.momentum) * this.current * r;
    return this.current;
  }
}

export function makeTalr(talr: TalrConfig, eta: number, u0: number): Talr {
  switch (talr.rule) {
    case 'additive':
      return new AdditiveTalr(eta, u0);
    case 'multiplicative':
      return new MultiplicativeTalr(talr.max_ratio, u0, talr.eps);
    case 'momentum_multiplicative':
      return new MomentumMultiplicativeTalr(talr.momentum, talr.max_ratio, u0, talr.eps);
  }
}
