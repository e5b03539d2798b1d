/**
 * How well K follows R: mean |K(t) - R(t)| / R(0) over the steps after a settling window
 * (K starts at 0 and needs a few time constants to reach R). 0 is perfect tracking; 1 means
 * K is off by the whole initial target on average.
 */
export class TrackingError {
  private sum = 0;
  private count = 0;

  constructor(
    readonly r0: number,
    readonly settleSteps: number,
  ) {}

  get value(): number | null {
    return this.count > 0 ? this.sum / this.count : null;
  }

  add(step: number, target: number, running: number): void {
    if (step < this.settleSteps || this.r0 <= 0) return;
    this.sum += Math.abs(running - target) / this.r0;
    this.count += 1;
  }

  stateDict(): { sum: number; count: number } {
    return { sum: this.sum, count: this.count };
  }

  loadStateDict(state: { sum: number; count: number }): void {
    this.sum = state.sum;
    this.count = state.count;
  }
}
