/**
 * Transition-adaptive learning rate, additive rule (method.md):
 * U(t) = max(0, U(t-1) + eta * (R(t) - K(t))). Raises U when transitions lag the target, lowers it when they exceed it.
 */
export class AdditiveTalr {
  constructor(
    readonly eta: number,
    private current: number,
  ) {}

  get value(): number {
    return this.current;
  }

  update(target: number, running: number): number {
    this.current = Math.max(0, this.current + this.eta * (target - running));
    return this.current;
  }

  stateDict(): { U: number } {
    return { U: this.current };
  }

  loadStateDict(state: { U: number }): void {
    this.current = state.U;
  }
}
