import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { makeDirs, readJson, writeJsonAtomic } from '../files.js';
import { CONFIG_FILE, RUN_FILE, type RunInfo } from '../run/record.js';
import type { ResolvedConfig } from '../config/resolve.js';
import type { PlannedRun, SweepPlan, SweepValue } from './plan.js';

/** The sweep's record in its folder. */
export const SWEEP_FILE = 'sweep.json';

/** pending: no folder yet; the others are the run folder's own status (run.json). */
export type SweepRunStatus = 'pending' | RunInfo['status'];

/** One run in sweep.json: where its folder is and how far it got. */
export interface SweepRunState {
  index: number;
  name: string;
  group: string;
  settings: Record<string, SweepValue>;
  seed: number;
  sets: string[];
  dir: string | null;
  status: SweepRunStatus;
  step: number | null;
  /** Where a resume continues (0: no checkpoint). */
  checkpoint_step: number | null;
  total_steps: number | null;
  error: string | null;
}

export interface SweepState {
  sweep_file: string;
  dir: string;
  updated: string;
  runs: SweepRunState[];
}

/** A run folder of the run named `name`: `<name>-YYYYMMDD-HHMMSS[-N]` (train's createRunDir). */
function isFolderOf(folder: string, name: string): boolean {
  return folder.startsWith(`${name}-`) && /^\d{8}-\d{6}(-\d+)?$/.test(folder.slice(name.length + 1));
}

/**
 * The run's folder under <sweep>/runs, found by its name (so array tasks need no shared state), the
 * newest when there are several; null when it has not started.
 */
export function findRunDir(plan: SweepPlan, run: PlannedRun, listing: readonly string[] = runFolders(plan)): string | null {
  const runs = join(plan.dir, 'runs');
  const folders = listing
    .filter((folder) => isFolderOf(folder, run.name) && existsSync(join(runs, folder, RUN_FILE)))
    .sort();
  return folders.length > 0 ? join(runs, folders[folders.length - 1]!) : null;
}

/** The folders under <sweep>/runs (read once for a whole sweep's state). */
export function runFolders(plan: SweepPlan): string[] {
  const runs = join(plan.dir, 'runs');
  return existsSync(runs) ? readdirSync(runs) : [];
}

/** The state of every planned run, read from the run folders themselves (the one source of truth). */
export function readState(plan: SweepPlan): SweepState {
  const listing = runFolders(plan);
  return {
    sweep_file: plan.spec.file,
    dir: plan.dir,
    updated: new Date().toISOString(),
    runs: plan.runs.map((run) => runState(plan, run, listing)),
  };
}

export function runState(plan: SweepPlan, run: PlannedRun, listing?: readonly string[]): SweepRunState {
  const dir = findRunDir(plan, run, listing);
  const info = dir ? readJson<RunInfo>(join(dir, RUN_FILE), 'run status') : null;
  return {
    index: run.index,
    name: run.name,
    group: run.group,
    settings: run.settings,
    seed: run.seed,
    sets: run.sets,
    dir,
    status: info?.status ?? 'pending',
    step: info ? info.step : null,
    checkpoint_step: info ? info.checkpoint_step : null,
    total_steps: info?.plan?.total_steps ?? null,
    error: info?.error ?? null,
  };
}

/** Writes sweep.json atomically (readers see the old state or the new one). */
export function writeState(state: SweepState): void {
  makeDirs(state.dir);
  writeJsonAtomic(join(state.dir, SWEEP_FILE), { ...state, updated: new Date().toISOString() });
}

/** The config a run folder was made with. */
export function storedConfig(dir: string): ResolvedConfig {
  return readJson<ResolvedConfig>(join(dir, CONFIG_FILE), 'run config');
}
