import { join } from 'node:path';
import type { ProcessExit, RunProcess } from '../bridge/launcher.js';
import { VersionMismatchError, type ProtocolError } from '../bridge/protocol.js';
import { delay } from './ending.js';

/** After a clean end, how long the processes of the run get to exit by themselves. */
const EXIT_GRACE_MS = 10_000;

/** The stderr log of a managed rank: worker.log for a single rank, worker-N.log for several. */
export function logName(rank: number, worldSize: number): string {
  return worldSize > 1 ? `worker-${rank}.log` : 'worker.log';
}

/** The processes a run started (its worker ranks, or the copies of a user's command), watched until they exit. */
export class Supervisor {
  private processes: RunProcess[] = [];
  /** trqat run: the exit of the first copy that failed by itself; the copies trqat stopped after it are not the cause. */
  private cause: ProcessExit | null = null;

  constructor(
    private readonly runDir: string,
    /** The processes are the run's ranks: a rank's process can be found, and its stderr is a worker log. */
    private readonly processesAreRanks: boolean,
    /** The run's world size (1 until the first hello fixed it): a single rank's log is worker.log. */
    private readonly worldSize: () => number,
  ) {}

  /** Watches `process`: its exit and a failure to write its log are reported, unless it was replaced since. */
  add(process: RunProcess, onExit: (exit: ProcessExit) => void, onLogFailed: (error: Error) => void): void {
    this.processes.push(process);
    void process.exited.then((exit) => {
      if (this.processes.includes(process)) onExit(exit); // else: stopped by an automatic restart
    });
    void process.logFailed.then(onLogFailed);
  }

  /** A process of this run has this pid (our own worker, say, refused at the handshake). */
  started(pid: number): boolean {
    return this.processes.some((p) => p.pid === pid);
  }

  /**
   * A refused frame came from one of this run's own worker ranks with another protocol version: it
   * cannot take part, and the run says so instead of waiting for it. (A user's script raises the
   * refusal itself and exits, which ends a client run.)
   */
  refusedRank(error: ProtocolError): boolean {
    return this.processesAreRanks && error instanceof VersionMismatchError && error.pid !== null && this.started(error.pid);
  }

  /** The process of `rank`, when processes are ranks. */
  ofRank(rank: number): RunProcess | undefined {
    return this.processesAreRanks ? this.processes.find((p) => p.rank === rank) : undefined;
  }

  /** trqat run: whether run.json records `exit` as how the command ended (the cause's, or any before there is a cause). */
  isCause(process: RunProcess, exit: ProcessExit): boolean {
    if (process.failedByItself) this.cause ??= exit;
    return this.cause === null || this.cause === exit;
  }

  allExited(): boolean {
    return this.processes.every((p) => p.exit !== null);
  }

  /** `text`, followed by the last lines of `process`'s stderr when it has any. */
  withStderr(text: string, process: RunProcess | undefined): string {
    const tail = process?.stderrTail() ?? '';
    return tail ? `${text}\n--- last lines of rank ${process!.rank}'s stderr (${join(this.runDir, logName(process!.rank, this.worldSize()))}) ---\n${tail}` : text;
  }

  killAll(): void {
    for (const process of this.processes) process.stop('SIGKILL');
  }

  /** An automatic restart: every process is killed and forgotten (its exit is no news). */
  async replaceAll(): Promise<void> {
    const old = this.processes.splice(0);
    for (const process of old) process.stop('SIGKILL');
    await Promise.all(old.map((p) => p.exited));
  }

  /** The run ends: processes whose rank said bye get EXIT_GRACE_MS to exit; others (all, when failed) are stopped. */
  async release(failed: boolean, saidBye: (rank: number) => boolean): Promise<void> {
    const running = this.processes.filter((p) => p.exit === null);
    for (const process of running) if (failed || !saidBye(process.rank)) process.stop();
    const exited = Promise.all(running.map((p) => p.exited));
    const inTime = await Promise.race([exited.then(() => true), delay(EXIT_GRACE_MS).then(() => false)]);
    if (!inTime) for (const process of running) process.stop();
    await exited;
  }
}
