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

/** best.json: the checkpoint of the best evaluation so far (train.keep_best). */
export interface BestPointer {
  step: number;
  /** Folder name under checkpoints/. */
  path: string;
  top1: number;
}

/** A checkpoint folder's name: step-NNNNNNN. */
const folderName = (step: number) => `step-${String(step).padStart(7, '0')}`;

/**
 * checkpoints/step-NNNNNNN/{worker.pt,controller.json}. Both halves are written into a temporary
 * folder that is renamed into place only when complete, then latest.json is swapped atomically:
 * a crash at any moment leaves the previous checkpoint intact and findable.
 *
 * With `keepBest` (train.keep_best), best.json points at the checkpoint of the best evaluation
 * (the highest top-1; the earlier one on a tie), and pruning never removes it: the newest `keep`
 * checkpoints are kept, and the best one besides.
 */
export class Checkpoints {
  readonly dir: string;

  constructor(
    runDir: string,
    private readonly keep: number,
    private readonly keepBest = false,
  ) {
    this.dir = join(runDir, 'checkpoints');
  }

  /**
   * Creates the temporary folder the worker saves into; `commit` makes it the latest checkpoint.
   * `top1`: the evaluation of this very step, if there was one (a candidate for the best).
   */
  begin(step: number): { staging: string; commit: (state: ControllerCheckpoint, top1?: number | null) => CheckpointRef } {
    makeDirs(this.dir);
    const name = folderName(step);
    const staging = join(this.dir, `${name}.partial`);
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging);
    const commit = (state: ControllerCheckpoint, top1: number | null = null): CheckpointRef => {
      if (!existsSync(join(staging, 'worker.pt'))) throw new TrqatError(`checkpoint ${staging}: the worker did not write worker.pt`);
      writeJsonAtomic(join(staging, 'controller.json'), state);
      const final = join(this.dir, name);
      rmSync(final, { recursive: true, force: true });
      renameSync(staging, final);
      writeJsonAtomic(join(this.dir, 'latest.json'), { step, path: name });
      if (top1 !== null && this.isNewBest(top1)) writeJsonAtomic(join(this.dir, 'best.json'), { step, path: name, top1 } satisfies BestPointer);
      this.prune(name);
      return { step, path: final };
    };
    return { staging, commit };
  }

  /** Whether an evaluation with this top-1 would become the kept best (always false without keepBest). */
  isNewBest(top1: number | null): boolean {
    if (!this.keepBest || top1 === null) return false;
    const best = this.bestPointer();
    return best === null || top1 > best.top1;
  }

  /** The newest complete checkpoint, or null when the run has none. */
  latest(): CheckpointRef | null {
    const pointer = join(this.dir, 'latest.json');
    if (!existsSync(pointer)) return null;
    const latest = readJson<{ step: number; path: string }>(pointer, 'checkpoint index');
    return { step: latest.step, path: this.complete(latest.path) };
  }

  /** The checkpoint of the best evaluation (best.json), or null when none was recorded. */
  best(): (CheckpointRef & { top1: number }) | null {
    const best = this.bestPointer();
    return best && { step: best.step, path: this.complete(best.path), top1: best.top1 };
  }

  /** The checkpoint of `step`; the error lists the steps there are. */
  at(step: number): CheckpointRef {
    if (!this.steps().includes(step)) {
      const steps = this.steps();
      throw new TrqatError(`${this.dir} has no checkpoint of step ${step}; ${steps.length > 0 ? `it has steps ${steps.join(', ')}` : 'it has none'}`);
    }
    return { step, path: this.complete(folderName(step)) };
  }

  /** The steps of the complete checkpoint folders, ascending. */
  steps(): number[] {
    if (!existsSync(this.dir)) return [];
    return readdirSync(this.dir)
      .filter((name) => /^step-\d+$/.test(name))
      .map((name) => Number(name.slice('step-'.length)))
      .sort((a, b) => a - b);
  }

  private bestPointer(): BestPointer | null {
    const pointer = join(this.dir, 'best.json');
    return existsSync(pointer) ? readJson<BestPointer>(pointer, 'best checkpoint index') : null;
  }

  /** The folder of a checkpoint, checked to hold both halves. */
  private complete(name: string): string {
    const path = join(this.dir, name);
    for (const file of ['worker.pt', 'controller.json']) {
      if (!existsSync(join(path, file))) throw new TrqatError(`checkpoint ${path} is incomplete: ${file} is missing`);
    }
    return path;
  }

  static readController(ref: CheckpointRef): ControllerCheckpoint {
    const state = readJson<ControllerCheckpoint>(join(ref.path, 'controller.json'), 'controller checkpoint');
    if (state.format !== CHECKPOINT_FORMAT) {
      throw new TrqatError(`checkpoint ${ref.path} has format ${state.format}; this trqat reads format ${CHECKPOINT_FORMAT}`);
    }
    return state;
  }

  /**
   * Keeps the newest `keep` checkpoints (by step, always the one just written), and the best one
   * with keepBest; drops stale partial folders.
   */
  private prune(committed: string): void {
    const names = readdirSync(this.dir);
    for (const name of names.filter((entry) => entry.endsWith('.partial'))) rmSync(join(this.dir, name), { recursive: true, force: true });
    const stepOf = (name: string) => Number(name.slice('step-'.length));
    const others = names.filter((name) => /^step-\d+$/.test(name) && name !== committed).sort((a, b) => stepOf(a) - stepOf(b));
    const kept = new Set([committed, ...others.slice(others.length - Math.min(others.length, this.keep - 1))]);
    const best = this.bestPointer()?.path;
    if (best && this.keepBest) kept.add(best);
    for (const name of others.filter((entry) => !kept.has(entry))) rmSync(join(this.dir, name), { recursive: true, force: true });
    // keep_best turned off on a resume: a pointer to a pruned checkpoint goes with it
    if (best && !kept.has(best)) rmSync(join(this.dir, 'best.json'), { force: true });
  }
}
