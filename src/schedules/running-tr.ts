/** Running transition rate K(t) = m * K(t-1) + (1 - m) * k(t): an exponential moving average of k. */
export class RunningTr {
  constructor(
    readonly momentum: number,
    private current = 0,
  ) {}

  get value(): number {
    return this.current;
  }

  update(k: number): number {
    this.current = this.momentum * this.current + (1 - this.momentum) * k;
    return this.current;
  }

  stateDict(): { K: number } {
    return { K: this.current };
  }

  loadStateDict(state: { K: number }): void {
    this.current = state.K;
  }
}
