import { join } from 'node:path';
import { scheduleChanges } from '../config/resume.js';
import { compareGroups, compareRow, type CompareGroup, type CompareRow } from '../dashboard/compare.js';
import { readRuns } from '../dashboard/reader.js';
import { writeReport } from '../dashboard/report.js';
import { ConfigError, TrqatError } from '../errors.js';
import { lockRunDir, makeDirs, removeQuietly } from '../files.js';
import type { RunEvent, RunSummary } from '../run/record.js';
import type { RunHandle, RunOptions } from '../run/run.js';
import { startResume, startTraining } from '../entry/train.js';
import { Checkpoints } from '../run/checkpoints.js';
import { gpuSlots, SlotPool } from './gpus.js';
import { planSweep, type PlannedRun, type SweepPlan } from './plan.js';
import { loadSweep } from './spec.js';
import { readState, runFolders, runState, storedConfig, writeState, type SweepRunState, type SweepState } from './state.js';

/** What a sweep tells its listener, run by run. */
export type SweepEvent =
  | { type: 'plan'; plan: SweepPlan; state: SweepState; concurrency: number; slots: string[][] | null }
  | { type: 'run-start'; run: PlannedRun; how: 'new' | 'resume' | 'restart'; gpus: string[] | null }
  | { type: 'run-skip'; run: PlannedRun; dir: string }
  | { type: 'run-event'; run: PlannedRun; event: RunEvent }
  | { type: 'run-end'; run: PlannedRun; state: SweepRunState; summary: RunSummary | null; error: string | null };

export interface SweepOptions {
  /** The sweep folder (default: the file's `out`, else sweeps/<file name>). */
  out?: string;
  /** Run only the run with this index (a SLURM array task): no sweep.json, no summary. */
  only?: number;
  onEvent?: (event: SweepEvent) => void;
  /** Aborting stops cleanly: no new run starts, the running ones stop with a checkpoint. */
  signal?: AbortSignal;
  /** Aborting stops the running runs at once (a second Ctrl-C). */
  signalNow?: AbortSignal;
  /** The GPUs of the machine (tests pass a fake list; default: CUDA_VISIBLE_DEVICES or nvidia-smi). */
  detectGpus?: () => string[];
}

export interface SweepSummary {
  rows: CompareRow[];
  groups: CompareGroup[];
  /** The overlaid report of every run with a folder. */
  report: string;
}

export interface SweepResult {
  dir: string;
  status: 'completed' | 'stopped' | 'failed';
  state: SweepState;
  /** Null for `only`. */
  summary: SweepSummary | null;
}

/** The plan of a sweep file: its runs, names and configs, checked before anything runs. */
export function sweepPlan(file: string, out?: string): SweepPlan {
  return planSweep(loadSweep(file), out);
}

/**
 * Runs a sweep (or its run `only`): runs that completed are skipped, interrupted ones resume from
 * their checkpoint (restart without one), the rest start; at most `concurrency` at once, each on
 * its own GPUs when there are some. Ends with the grouped comparison and the overlaid report.
 */
export async function sweep(file: string, options: SweepOptions = {}): Promise<SweepResult> {
  const plan = sweepPlan(file, options.out);
  const runs = options.only === undefined ? plan.runs : [onlyRun(plan, options.only)];
  checkFolders(plan, runs);
  const ranks = plan.runs[0]?.config.worker.nproc_per_node ?? 1;
  const slots = gpuSlots(plan.spec.gpus, ranks, options.detectGpus);
  const concurrency = Math.min(plan.spec.concurrency, slots?.length ?? Infinity);
  makeDirs(join(plan.dir, 'runs'));
  const unlock = options.only === undefined ? lockRunDir(plan.dir) : () => undefined; // array tasks share the folder
  const tell = (event: SweepEvent) => options.onEvent?.(event);
  const record = () => {
    if (options.only === undefined) writeState(readState(plan));
  };
  const handles = new Set<RunHandle>();
  const now = () => handles.forEach((handle) => handle.stopNow('stopped at once (a second Ctrl-C); the sweep resumes it from its last checkpoint'));
  options.signalNow?.addEventListener('abort', now);
  let failed = false;
  try {
    const state = readState(plan);
    if (options.only === undefined) writeState(state);
    tell({ type: 'plan', plan, state, concurrency, slots });
    const queue = [...runs];
    const pool = slots ? new SlotPool(slots) : null;
    const lane = async () => {
      for (let run = queue.shift(); run && !options.signal?.aborted; run = queue.shift()) {
        const slot = pool?.take() ?? null;
        try {
          const env = slot ? SlotPool.env(slot) : undefined;
          const ok = await runOne(plan, run, { signal: options.signal, workerEnv: env }, slot, tell, handles);
          failed ||= !ok;
        } finally {
          if (slot) pool!.give(slot);
          record();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, runs.length)) }, lane));
  } finally {
    options.signalNow?.removeEventListener('abort', now);
    unlock();
  }
  const state = readState(plan);
  const mine = state.runs.filter((run) => runs.some((r) => r.index === run.index));
  const status = mine.every((run) => run.status === 'completed') ? 'completed' : failed ? 'failed' : 'stopped';
  return { dir: plan.dir, status, state, summary: options.only === undefined ? await summarize(plan, state) : null };
}

/** The comparison grouped by setting, and the overlaid report (<sweep>/report.html), of the runs that have a folder. */
export async function summarize(plan: SweepPlan, state: SweepState = readState(plan)): Promise<SweepSummary> {
  const started = state.runs.filter((run) => run.dir !== null);
  if (started.length === 0) throw new TrqatError(`no run of the sweep has started yet in ${plan.dir} (run it: trqat sweep ${plan.spec.file})`, 2);
  writeState(state);
  const readers = await readRuns(started.map((run) => run.dir!));
  const rows = readers.map((reader) => compareRow(reader.data));
  const groupOf = new Map(started.map((run) => [run.dir!, run.group]));
  const report = join(plan.dir, 'report.html');
  writeReport(
    readers.map((reader) => reader.data),
    report,
  );
  return { rows, groups: compareGroups(rows, (row) => groupOf.get(row.dir) ?? row.run), report };
}

function onlyRun(plan: SweepPlan, index: number): PlannedRun {
  const run = plan.runs[index];
  if (!run) throw new ConfigError(`--only ${index}: the sweep has ${plan.runs.length} runs, numbered 0 to ${plan.runs.length - 1} (trqat sweep FILE --plan lists them)`);
  return run;
}

/** A run folder made with other settings than the sweep now asks (the file was edited) is refused before anything runs. */
function checkFolders(plan: SweepPlan, runs: readonly PlannedRun[]): void {
  const listing = runFolders(plan);
  for (const run of runs) {
    const { dir } = runState(plan, run, listing);
    if (!dir) continue;
    const changes = scheduleChanges(storedConfig(dir), run.config).filter((change) => !change.startsWith('out_dir '));
    if (changes.length > 0) {
      throw new ConfigError(
        `${dir} was trained with other settings than the sweep file now gives run ${run.index} (${run.name}): ${changes.join(', ')}. ` +
          'Restore the sweep file, or sweep into another folder (--out DIR)',
      );
    }
  }
}

/** One run to its end: skipped when completed, resumed from its checkpoint, else (re)started. Returns false when it failed. */
async function runOne(
  plan: SweepPlan,
  run: PlannedRun,
  options: RunOptions,
  gpus: string[] | null,
  tell: (event: SweepEvent) => void,
  handles: Set<RunHandle>,
): Promise<boolean> {
  const before = runState(plan, run);
  if (before.status === 'completed') {
    tell({ type: 'run-skip', run, dir: before.dir! });
    return true;
  }
  const onEvent = (event: RunEvent) => tell({ type: 'run-event', run, event });
  const resumable = before.dir !== null && hasCheckpoint(before.dir);
  if (before.dir !== null && !resumable) {
    lockRunDir(before.dir)(); // in use by a live process: refused here, before anything is removed
    removeQuietly(before.dir); // nothing to resume: the run starts again in a new folder
  }
  tell({ type: 'run-start', run, how: resumable ? 'resume' : before.dir ? 'restart' : 'new', gpus });
  let summary: RunSummary | null = null;
  let error: string | null = null;
  try {
    const handle = resumable ? await startResume(before.dir!, { ...options, onEvent }) : await startTraining(run.config, { ...options, onEvent });
    handles.add(handle);
    try {
      summary = await handle.done;
    } finally {
      handles.delete(handle);
    }
  } catch (problem) {
    error = (problem as Error).message;
  }
  tell({ type: 'run-end', run, state: runState(plan, run), summary, error });
  return error === null;
}

/** Whether the run folder holds a checkpoint a resume can continue from (what `resume` itself reads). */
function hasCheckpoint(dir: string): boolean {
  try {
    return new Checkpoints(dir, 1).latest() !== null;
  } catch {
    return false; // checkpoints, none intact: the run starts again
  }
}
