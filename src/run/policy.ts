import type { ResolvedConfig } from '../config/resolve.js';
import type { ProcessExit, RunProcess } from '../bridge/launcher.js';
import type { PeerRole, WorkerBody } from '../bridge/protocol.js';
import type { RunKind } from './record.js';

/** The run's length and cadence from the first rank's ready, or the refusal that rank gets. */
export type RunLength = { total: number; evalEvery: number; checkpointEvery: number; warnings: string[] } | { refuse: string };

/** What a policy sees of its run when one of the run's processes exits. */
export interface ExitContext {
  readonly planned: boolean;
  /** The first error a rank reported in its bye, if any. */
  readonly clientError: string | null;
  /** " at step N of T" once the run has a plan, else " before its first step". */
  position(): string;
  hasSaidBye(rank: number): boolean;
  allExited(): boolean;
  /** A failure of `process`'s rank, with what it was doing and the tail of its stderr. */
  rankFailure(text: string, process: RunProcess): Error;
  fail(error: Error): void;
  /** A rank exited abnormally: reported as a crash unless another rank turns out to be the cause (blame.ts). */
  rankCrashed(rank: number, killed: boolean, error: Error): void;
  finish(): void;
}

/**
 * What differs between the kinds of run (`managed.ts`: trqat's own workers; `client.ts`: a user's
 * script). `Run` asks its policy and branches on nothing else.
 */
export interface RunPolicy {
  readonly kind: RunKind;
  /** The role every hello must have, and what a peer of the other role is told. */
  readonly role: PeerRole;
  readonly wrongRole: string;
  /** The world size a hello must give before the first hello has fixed it; null: any. */
  expectedWorldSize(config: ResolvedConfig): number | null;
  /** Sessions started elsewhere need auth.json (owner-only) to join. */
  writesAuthFile(config: ResolvedConfig): boolean;
  /** How long every rank has to be ready; null: as long as it takes (a user's script). */
  startupTimeoutMs(config: ResolvedConfig): number | null;
  /** The run's length and its evaluation and checkpoint cadence, from the first ready. */
  length(config: ResolvedConfig, body: WorkerBody<'ready'>): RunLength;
  /** The config follows the model's bit-widths (a user's script chose them). */
  readonly adoptsModelBits: boolean;
  /** Evaluate and save directives with the LRs; without them a session gets only stop. */
  readonly directives: boolean;
  /** A stop ends the run without waiting for the ranks' bye: at once without sessions, else after this grace. */
  stopGraceMs(requested: number | undefined): number | null;
  /** The run restarts its ranks from the last checkpoint after a crash (it started them itself). */
  restartable(launchesRanks: boolean): boolean;
  /** An `error` message fails the run; otherwise it is a warning (a user's script handles its own). */
  readonly errorsFail: boolean;
  /** The processes the run starts are its ranks (their stderr is a worker log, their hang is killed). */
  readonly processesAreRanks: boolean;
  /** A process of the run exited (after the run recorded it; never once the run has ended). */
  exited(run: ExitContext, process: RunProcess, exit: ProcessExit): void;
}
