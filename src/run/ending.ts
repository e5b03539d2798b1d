import { TrqatError } from '../errors.js';
import type { StepRecord } from './metrics.js';

/** The run failed: a rank died, hung or reported an error; the message holds what is known (stderr tail). */
export class RunFailure extends TrqatError {}

/** Ranks that disagree about a step's transitions: data-parallel ranks must start and stay identical. */
export function mismatchFailure(message: string): RunFailure {
  return new RunFailure(`${message}: data-parallel ranks must hold identical weights (wrap the model in DistributedDataParallel, initialise it identically on every rank)`);
}

/** A step whose loss is not finite; `checkpointStep` (0: none) is what is left intact. */
export function divergenceFailure(record: StepRecord, checkpointStep: number): RunFailure {
  return new RunFailure(
    `training diverged: the loss of step ${record.step} is ${record.loss}; lower optimizer.lr (or tr.talr.u0), or set train.grad_clip` +
      (checkpointStep > 0 ? ` (the last checkpoint, step ${checkpointStep}, is intact)` : ''),
  );
}

/** A rank's crash past worker.max_restarts: the first line says how many restarts there were. */
export function restartLimitFailure(error: Error, recent: number, windowMs: number, max: number): RunFailure {
  const [head, ...tail] = error.message.split('\n');
  const limit = ` (after ${recent} automatic restart(s) within ${Math.round(windowMs / 60_000)} min; worker.max_restarts=${max})`;
  return new RunFailure([head + limit, ...tail].join('\n'));
}

/** A rank reported an error: its traceback, or else the tail of its stderr (`withStderr`), says where. */
export function reportedFailure(rank: number, doing: string, body: { message: string; traceback?: string | null }, withStderr: (text: string) => string): RunFailure {
  const text = `rank ${rank} reported an error while ${doing}: ${body.message}`;
  return new RunFailure(body.traceback ? `${text}\n${body.traceback.trimEnd()}` : withStderr(text));
}

/** A rank that stopped answering (`reason`) while `doing`: the tail of its stderr (`withStderr`) may say why. */
export function lostFailure(hello: { rank: number; pid: number; hostname: string }, reason: string, doing: string, withStderr: (text: string) => string): RunFailure {
  return new RunFailure(withStderr(`rank ${hello.rank} (pid ${hello.pid} on ${hello.hostname}) stopped answering (${reason}) while ${doing}`));
}

/** The error a rank's bye reported, as its run reports it; none for a Ctrl-C in the script (KeyboardInterrupt is a stop, not a failure). */
export function byeError(rank: number, error: string | null | undefined): string | null {
  return error && !error.startsWith('KeyboardInterrupt') ? `rank ${rank} reported: ${error}` : null;
}

/** A script that reported an error in its bye fails its run, even if it exited cleanly. */
export function scriptFailure(clientError: string, position: string): RunFailure {
  return new RunFailure(`the training script failed${position}: ${clientError}`);
}

/** Runs `action`; a failure becomes a warning (the run is already ending: nothing may throw there). */
export function attempt(action: () => void, warn: (message: string) => void): void {
  try {
    action();
  } catch (error) {
    warn(`${(error as Error).message} (while ending the run)`);
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
