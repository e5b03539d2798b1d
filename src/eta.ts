/**
 * The time left, from the pace of the recent steps: the steps and their times in a moving window
 * of WINDOW_S seconds (at least the last two steps). The pace of the whole run so far would count
 * the start-up and the first slow step (ETAs about 3x too high early) and lag every change of
 * pace; one step's pace is noise. The first step after a (re)start counts only until a second one
 * gives the pace. One class for the CLI's step lines and the dashboard.
 */
export class EtaWindow {
  /** Steps (0-based) and their times (seconds), oldest first. */
  private readonly steps: number[] = [];
  private readonly times: number[] = [];
  /** The first step after a (re)start is still in the window: it is dropped once a later one gives the pace. */
  private warmUp = true;

  constructor(private readonly windowS = WINDOW_S) {}

  /**
   * Step `step` was decided at `time` (seconds). A step at or before the last one (a resume
   * replays), or one after a pause longer than the window (a resumed run's log), starts over.
   */
  add(step: number, time: number): void {
    const last = this.steps.length - 1;
    if (last >= 0 && (step <= this.steps[last]! || time - this.times[last]! > this.windowS)) {
      this.steps.length = 0;
      this.times.length = 0;
      this.warmUp = true;
    }
    this.steps.push(step);
    this.times.push(time);
    // The first step of a session is slow (allocations, the first batch, kernels chosen): not the pace.
    if (this.warmUp && this.steps.length === 3) {
      this.steps.shift();
      this.times.shift();
      this.warmUp = false;
    }
    // Keep the newest samples that span the window: drop the oldest while the next one still covers it.
    let drop = 0;
    while (this.steps.length - drop > 2 && time - this.times[drop + 1]! >= this.windowS) drop++;
    if (drop > 0 || this.steps.length > MAX_SAMPLES) {
      const n = Math.max(drop, this.steps.length - MAX_SAMPLES);
      this.steps.splice(0, n);
      this.times.splice(0, n);
    }
  }

  /** Steps per second over the window; null before two steps. */
  rate(): number | null {
    const n = this.steps.length;
    if (n < 2) return null;
    const seconds = this.times[n - 1]! - this.times[0]!;
    return seconds > 0 ? (this.steps[n - 1]! - this.steps[0]!) / seconds : null;
  }

  /** Seconds until step `totalSteps - 1` is done; null while the pace is unknown. */
  eta(totalSteps: number): number | null {
    const rate = this.rate();
    const last = this.steps[this.steps.length - 1];
    if (rate === null || rate <= 0 || last === undefined) return null;
    return Math.max(0, totalSteps - (last + 1)) / rate;
  }
}

/** The window an ETA is measured over. */
const WINDOW_S = 60;
/** At most this many samples are kept (a fast run's minute). */
const MAX_SAMPLES = 4096;
