import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TrqatError } from '../errors.js';
import type { ResolvedConfig } from '../config/resolve.js';
import type { ControllerState } from '../schedules/controller.js';
import { makeDirs, readJson, writeJsonAtomic } from './files.js';

export const CHECKPOINT_FORMAT = 1;

/** The controller's half of a checkpoint (`controller.json`); the worker's half is `worker.pt` beside it. */
export interface ControllerCheckpoint {
  format: number;
  /** The next step to run. */
  step: number;
  total_steps: number;
  controller: ControllerState;
  best_top1: number | null;
  elapsed_s: number;
  /** The run's config when the checkpoint was written: a resume refuses a config whose schedule differs. */
  config?: ResolvedConfig;
}

export interface CheckpointRef {
  step: number;
  path: string;
}

/**
 * checkpoints/step-NNNNNNN/{worker.pt,controller.json}. Both halves are written into a temporary
 * folder that is renamed into place only when complete, then latest.json is swapped atomically:
 * a crash at any moment leaves the previous checkpoint intact and findable.
 */
export class Checkpoints {
  readonly dir: string;

  constructor(
    runDir: string,
    private readonly keep: number,
  ) {
    this.dir = join(runDir, 'checkpoints');
  }

  /** Creates the temporary folder the worker saves into; `commit` makes it the latest checkpoint. */
  begin(step: number): { staging: string; commit: (state: ControllerCheckpoint) => CheckpointRef } {
    makeDirs(this.dir);
    const name = `step-${String(step).padStart(7, '0')}`;
    const staging = join(this.dir, `${name}.partial`);
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging);
    const commit = (state: ControllerCheckpoint): CheckpointRef => {
      if (!existsSync(join(staging, 'worker.pt'))) throw new TrqatError(`checkpoint ${staging}: the worker did not write worker.pt`);
      writeJsonAtomic(join(staging, 'controller.json'), state);
      const final = join(this.dir, name);
      rmSync(final, { recursive: true, force: true });
      renameSync(staging, final);
      writeJsonAtomic(join(this.dir, 'latest.json'), { step, path: name });
      this.prune(name);
      return { step, path: final };
    };
    return { staging, commit };
  }

  /** The newest complete checkpoint, or null when the run has none. */
  latest(): CheckpointRef | null {
    const pointer = join(this.dir, 'latest.json');
    if (!existsSync(pointer)) return null;
    const latest = readJson<{ step: number; path: string }>(pointer, 'checkpoint index');
    const path = join(this.dir, latest.path);
    for (const file of ['worker.pt', 'controller.json']) {
      if (!existsSync(join(path, file))) throw new TrqatError(`checkpoint ${path} is incomplete: ${file} is missing`);
    }
    return { step: latest.step, path };
  }

  static readController(ref: CheckpointRef): ControllerCheckpoint {
    const state = readJson<ControllerCheckpoint>(join(ref.path, 'controller.json'), 'controller checkpoint');
    if (state.format !== CHECKPOINT_FORMAT) {
      throw new TrqatError(`checkpoint ${ref.path} has format ${state.format}; this trqat reads format ${CHECKPOINT_FORMAT}`);
    }
    return state;
  }

  /** Keeps the newest `keep` checkpoints (by step, never the one just written) and drops stale partial folders. */
  private prune(committed: string): void {
    const names = readdirSync(this.dir);
    for (const name of names.filter((entry) => entry.endsWith('.partial'))) rmSync(join(this.dir, name), { recursive: true, force: true });
    const stepOf = (name: string) => Number(name.slice('step-'.length));
    const complete = names.filter((name) => /^step-\d+$/.test(name) && name !== committed).sort((a, b) => stepOf(a) - stepOf(b));
    for (const name of complete.slice(0, Math.max(0, complete.length - (this.keep - 1)))) {
      rmSync(join(this.dir, name), { recursive: true, force: true });
    }
  }
}
