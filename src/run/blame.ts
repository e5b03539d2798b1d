/**
 * With several ranks, one rank's death breaks the others' collectives, and their errors (or exits)
 * can reach the controller before the dead rank's exit. A failure report of one rank waits this long
 * for another rank's abnormal exit, which is then reported as the cause.
 */
export const CAUSE_GRACE_MS = 1500;

type Report = 'error' | 'exit';

/** Which rank's failure a run reports: the first report waits CAUSE_GRACE_MS for the real cause. */
export class Blame {
  private suspect: { rank: number; kind: Report; timer: NodeJS.Timeout } | null = null;

  /**
   * A rank's failure (`act`), unless another rank turns out to be the cause: with several ranks a
   * report waits CAUSE_GRACE_MS; an abnormal exit of another rank within it (after an error), or a
   * rank killed by a signal, is the cause instead. The first rank's own exit after its error changes nothing.
   */
  report(rank: number, kind: Report, killed: boolean, worldSize: number, act: () => void): void {
    const suspect = this.suspect;
    if (suspect) {
      if (suspect.rank === rank || kind === 'error' || (suspect.kind === 'exit' && !killed)) return;
      this.clear();
      act();
      return;
    }
    if (killed || worldSize <= 1) {
      act();
      return;
    }
    const timer = setTimeout(() => {
      this.suspect = null;
      act();
    }, CAUSE_GRACE_MS);
    timer.unref();
    this.suspect = { rank, kind, timer };
  }

  /** The run restarts or ends: a waiting report is dropped. */
  clear(): void {
    if (this.suspect) clearTimeout(this.suspect.timer);
    this.suspect = null;
  }
}
