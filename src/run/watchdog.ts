/**
 * The run's clocks: what each rank is doing (for the messages of a failure), the progress timer
 * (no step, evaluation or report within worker.command_timeout_ms fails the run), and one-shot
 * timers that end with the run (the startup limit, a client run's stop grace).
 */
export class Watchdog {
  private readonly activity = new Map<number, string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private progressTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly commandTimeoutMs: number,
    private readonly onStall: (message: string) => void,
  ) {}

  /** What `rank` is doing now ("training step 37"). */
  set(rank: number, what: string): void {
    this.activity.set(rank, what);
  }

  doing(rank: number): string {
    return this.activity.get(rank) ?? 'starting up';
  }

  /** The run makes progress: the stall clock starts again. */
  progress(): void {
    this.stopProgress();
    const limit = this.commandTimeoutMs;
    this.progressTimer = setTimeout(() => {
      const waiting = [...this.activity.entries()].map(([rank, what]) => `rank ${rank}: ${what}`).join('; ');
      this.onStall(`no progress within worker.command_timeout_ms (${limit} ms): ${waiting}`);
    }, limit);
    this.progressTimer.unref();
  }

  stopProgress(): void {
    if (this.progressTimer) clearTimeout(this.progressTimer);
    this.progressTimer = null;
  }

  /** Runs `fn` after `ms` unless the run ends first. */
  later(fn: () => void, ms: number): void {
    const timer = setTimeout(fn, ms);
    timer.unref();
    this.timers.push(timer);
  }

  /** Fails the run (like a stall) when `late()`, asked after `limitMs`, returns what is late. */
  deadline(limitMs: number, late: () => string | null): void {
    this.later(() => {
      const message = late();
      if (message !== null) this.onStall(message);
    }, limitMs);
  }

  /**
   * The startup limit (worker.startup_timeout_ms; null: none): fails the run unless, after `limitMs`,
   * it has ended, or it is planned and every rank of its world is ready.
   */
  startup(limitMs: number | null, run: { ended(): boolean; planned(): boolean; ready(): number; worldSize(): number | null }): void {
    if (limitMs === null) return;
    this.deadline(limitMs, () =>
      run.ended() || (run.planned() && run.ready() >= run.worldSize()!)
        ? null
        : `not every rank was ready within worker.startup_timeout_ms (${limitMs} ms): ${run.ready()} of ${run.worldSize() ?? '?'} ready`,
    );
  }

  /** An automatic restart: the ranks start over. */
  restart(): void {
    this.stopProgress();
    this.activity.clear();
  }

  /** The run ends: no timer fires any more. */
  clear(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.stopProgress();
  }
}
