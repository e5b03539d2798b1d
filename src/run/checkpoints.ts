import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { TrqatError } from '../errors.js';
import type { ResolvedConfig } from '../config/resolve.js';
import type { ControllerState } from '../schedules/controller.js';
import { makeDirs, readJson, removeQuietly, writeJsonAtomic, writing, RUN_DIR_MODE } from '../files.js';

/** The run folder's checkpoints (`step-NNNNNNN/` and latest.json). */
export const CHECKPOINTS_DIR = 'checkpoints';

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
 * The largest TALR U (a learning rate) a checkpoint may hold: no run trains above it, and a larger
 * one (a damaged or hand-edited file) would reach the ranks as an LR that overflows.
 */
export const MAX_CHECKPOINT_U = 1e6;

const finite = z.number().refine(Number.isFinite, 'must be a finite number');
const rate = finite.pipe(z.number().min(0, 'must be a rate in [0, 1]').max(1, 'must be a rate in [0, 1]'));
const lr = finite.pipe(z.number().min(0, 'must not be negative').max(MAX_CHECKPOINT_U, `must be at most ${MAX_CHECKPOINT_U}`));
/** controller.json as the controller wrote it: every number finite and in its range (a resume sends these to the ranks). */
const controllerCheckpointSchema = z.object({
  format: z.literal(CHECKPOINT_FORMAT),
  step: z.number().int().min(0),
  total_steps: z.number().int().min(1),
  controller: z.object({
    K: rate,
    U: lr,
    last_step: z.number().int().min(-1),
    K_layers: z.array(rate).optional(),
    U_layers: z.array(lr).optional(),
    tracking: z.object({ sum: finite.pipe(z.number().min(0)), count: z.number().int().min(0) }).optional(),
  }),
  best_top1: finite.pipe(z.number().min(0).max(100)).nullable(),
  elapsed_s: finite.pipe(z.number().min(0)),
  config: z.record(z.string(), z.unknown()).optional(),
});

/** The two halves of every checkpoint folder. */
const FILES = ['worker.pt', 'controller.json'] as const;

const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/);
/** One committed checkpoint: its step, its folder's name under checkpoints/, the sha256 of each half. */
const commitSchema = z.object({
  step: z.number().int().min(0),
  path: z.string(),
  /** Absent in checkpoints of trqat before checksums: those are checked for completeness only. */
  sha256: z.object({ 'worker.pt': sha256Schema, 'controller.json': sha256Schema }).optional(),
});
type Commit = z.infer<typeof commitSchema>;

/** latest.json: the newest committed checkpoint, and every kept one (`committed`, in the order they were committed) to fall back on. */
const latestSchema = commitSchema.extend({ committed: z.array(commitSchema).optional() });
type LatestIndex = z.infer<typeof latestSchema>;

/** best.json: the checkpoint of the best evaluation so far (train.keep_best). */
const bestSchema = commitSchema.extend({ top1: z.number() });
export type BestPointer = z.infer<typeof bestSchema>;

/** A checkpoint folder's name: step-NNNNNNN. */
export const folderName = (step: number) => `step-${String(step).padStart(7, '0')}`;
const FOLDER = /^step-\d{7,}$/;

/**
 * checkpoints/step-NNNNNNN/{worker.pt,controller.json}. Both halves are written into a temporary
 * folder that is renamed into place only when complete, then latest.json is swapped atomically:
 * a crash at any moment leaves the previous checkpoint intact and findable.
 *
 * latest.json records the sha256 of both halves of every kept checkpoint. Reading a checkpoint
 * verifies them: a damaged latest checkpoint is reported and the newest intact one is used instead.
 * Only `step-NNNNNNN` folders inside checkpoints/ are ever read, whatever the index files say.
 *
 * With `keepBest` (train.keep_best), best.json points at the checkpoint of the best evaluation
 * (the highest top-1; the earlier one on a tie), and pruning never removes it: the newest `keep`
 * checkpoints are kept, and the best one besides.
 */
export class Checkpoints {
  readonly dir: string;
  /** Checkpoints whose worker.pt the worker refused (`refuse`): skipped like damaged ones, with the worker's reason. */
  private readonly refused = new Map<string, string>();

  constructor(
    runDir: string,
    private readonly keep: number,
    private readonly keepBest = false,
  ) {
    this.dir = join(runDir, CHECKPOINTS_DIR);
  }

  /**
   * Creates the temporary folder the worker saves into; `commit` makes it the latest checkpoint.
   * `top1`: the evaluation of this very step, if there was one (a candidate for the best).
   * A commit that fails (a full disk) removes what it wrote and throws a WriteError; the previous
   * checkpoint stays the latest.
   */
  begin(step: number): { staging: string; commit: (state: ControllerCheckpoint, top1?: number | null) => CheckpointRef } {
    const name = folderName(step);
    const staging = join(this.dir, `${name}.partial`);
    writing(staging, () => {
      makeDirs(this.dir, RUN_DIR_MODE);
      rmSync(staging, { recursive: true, force: true });
      makeDirs(staging, RUN_DIR_MODE);
    });
    const commit = (state: ControllerCheckpoint, top1: number | null = null): CheckpointRef => {
      if (!existsSync(join(staging, 'worker.pt'))) throw new TrqatError(`checkpoint ${staging}: the worker did not write worker.pt`);
      const final = join(this.dir, name);
      let placed = false;
      try {
        writeJsonAtomic(join(staging, 'controller.json'), state);
        const record: Commit = { step, path: name, sha256: checksums(staging) };
        writing(final, () => {
          rmSync(final, { recursive: true, force: true });
          renameSync(staging, final);
        });
        placed = true;
        const best = top1 !== null && this.isNewBest(top1) ? name : (this.bestPointer()?.path ?? null);
        // Checkpoints of this step or later belong to a timeline the run left (it resumed from an
        // older one because they were damaged): they are dropped. Of the rest the newest `keep` stay.
        const earlier = this.committed().filter((c) => c.step < step);
        const committed = [...earlier.slice(Math.max(0, earlier.length - (this.keep - 1))), record];
        const kept = new Set(committed.map((c) => c.path));
        if (best && this.keepBest) kept.add(best);
        writeJsonAtomic(join(this.dir, 'latest.json'), { ...record, committed } satisfies LatestIndex);
        placed = false; // committed: from here on it stays, whatever else fails
        if (best === name) writeJsonAtomic(join(this.dir, 'best.json'), { ...record, top1: top1! } satisfies BestPointer);
        this.prune(kept, best);
      } catch (error) {
        removeQuietly(staging);
        if (placed) removeQuietly(final);
        throw error;
      }
      return { step, path: final };
    };
    return { staging, commit };
  }

  /** The worker refused this checkpoint's worker.pt (crafted, unreadable): `latest` skips it from now on. */
  refuse(ref: CheckpointRef, reason: string): void {
    this.refused.set(ref.path, `checkpoint ${ref.path} was refused by the worker: ${reason}`);
  }

  /** Whether an evaluation with this top-1 would become the kept best (always false without keepBest). */
  isNewBest(top1: number | null): boolean {
    if (!this.keepBest || top1 === null) return false;
    const best = this.bestPointer();
    return best === null || top1 > best.top1;
  }

  /**
   * The newest intact checkpoint, or null when the run has none. A newer one that is damaged
   * (a checksum that differs, a half missing) is skipped; `warn` hears which and why. Throws when
   * there are checkpoints and none is intact.
   */
  latest(warn: (message: string) => void = () => undefined): CheckpointRef | null {
    const pointer = join(this.dir, 'latest.json');
    if (!existsSync(pointer)) return null;
    const problems: string[] = [];
    let candidates: Commit[];
    try {
      // The latest first, then the earlier commits, newest first.
      const index = this.readIndex(pointer, latestSchema, 'checkpoint index');
      candidates = [index, ...(index.committed ?? []).filter((c) => c.path !== index.path).reverse()];
    } catch (error) {
      // Without its index every complete folder is a candidate, newest first, checked for completeness only.
      problems.push((error as Error).message);
      candidates = this.steps().reverse().map((step) => ({ step, path: folderName(step) }));
    }
    for (const candidate of candidates) {
      const problem = this.verify(candidate);
      if (problem === null) {
        if (problems.length > 0) warn(`${problems.join('; ')}; using the checkpoint of step ${candidate.step} instead`);
        return { step: candidate.step, path: join(this.dir, candidate.path) };
      }
      problems.push(problem);
    }
    throw new TrqatError(`no intact checkpoint in ${this.dir}: ${problems.join('; ')}`);
  }

  /** The checkpoint of the best evaluation (best.json), verified; null when none was recorded. */
  best(): (CheckpointRef & { top1: number }) | null {
    const best = this.bestPointer();
    if (!best) return null;
    const problem = this.verify(best);
    if (problem !== null) throw new TrqatError(`the best checkpoint cannot be used: ${problem}`);
    return { step: best.step, path: join(this.dir, best.path), top1: best.top1 };
  }

  /**
   * The checkpoint of `step`, verified when latest.json records it. A step that has none is a usage
   * error (exit 2) listing the steps there are; a damaged one is an error of the file (exit 1).
   */
  at(step: number): CheckpointRef {
    const steps = this.steps();
    if (!steps.includes(step)) {
      throw new TrqatError(`${this.dir} has no checkpoint of step ${step}; ${steps.length > 0 ? `it has steps ${steps.join(', ')}` : 'it has none'}`, 2);
    }
    const commit = this.committed().find((c) => c.step === step) ?? { step, path: folderName(step) };
    const problem = this.verify(commit);
    if (problem !== null) throw new TrqatError(problem);
    return { step, path: join(this.dir, commit.path) };
  }

  /** The steps of the complete checkpoint folders, ascending. */
  steps(): number[] {
    if (!existsSync(this.dir)) return [];
    return readdirSync(this.dir)
      .filter((name) => FOLDER.test(name))
      .map((name) => Number(name.slice('step-'.length)))
      .sort((a, b) => a - b);
  }

  /** controller.json of a checkpoint, validated: a value out of its range is an error naming the key. */
  static readController(ref: CheckpointRef): ControllerCheckpoint {
    const state = readJson<unknown>(join(ref.path, 'controller.json'), 'controller checkpoint');
    const format = (state as Partial<ControllerCheckpoint> | null)?.format;
    if (state === null || typeof state !== 'object' || format !== CHECKPOINT_FORMAT) {
      throw new TrqatError(`checkpoint ${ref.path} has format ${format}; this trqat reads format ${CHECKPOINT_FORMAT}`);
    }
    const parsed = controllerCheckpointSchema.safeParse(state);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const value = issue.path.reduce<unknown>((node, key) => (node as Record<PropertyKey, unknown> | undefined)?.[key], state);
      throw new TrqatError(`checkpoint ${ref.path} holds an invalid controller state: ${issue.path.join('.')} ${issue.message} (got ${JSON.stringify(value) ?? 'nothing'})`);
    }
    if (parsed.data.step !== ref.step) throw new TrqatError(`checkpoint ${ref.path} is inconsistent: controller.json is at step ${parsed.data.step}, its folder at step ${ref.step}`);
    return state as ControllerCheckpoint;
  }

  /**
   * Why a checkpoint cannot be used, or null when it is intact: its folder must be the
   * step-NNNNNNN of its step inside checkpoints/, hold both halves, and match their checksums.
   */
  private verify(commit: Commit): string | null {
    if (!FOLDER.test(commit.path) || commit.path !== folderName(commit.step)) {
      return `${JSON.stringify(commit.path)} is not the checkpoint folder of step ${commit.step} (only ${folderName(commit.step)} inside ${this.dir} is read)`;
    }
    const path = join(this.dir, commit.path);
    for (const file of FILES) {
      if (!existsSync(join(path, file))) return `checkpoint ${path} is incomplete: ${file} is missing`;
    }
    if (commit.sha256) {
      const actual = checksums(path);
      const damaged = FILES.filter((file) => actual[file] !== commit.sha256![file]);
      if (damaged.length > 0) return `checkpoint ${path} is damaged: ${damaged.join(' and ')} ${damaged.length > 1 ? 'do' : 'does'} not match the sha256 recorded at its commit`;
    }
    if (this.refused.has(path)) return this.refused.get(path)!;
    try {
      Checkpoints.readController({ step: commit.step, path });
    } catch (error) {
      return (error as Error).message;
    }
    return null;
  }

  /** The checkpoints latest.json lists, in the order they were committed (empty when it cannot be read). */
  private committed(): Commit[] {
    try {
      const pointer = join(this.dir, 'latest.json');
      if (!existsSync(pointer)) return [];
      const index = this.readIndex(pointer, latestSchema, 'checkpoint index');
      return index.committed ?? [index];
    } catch {
      return [];
    }
  }

  private bestPointer(): BestPointer | null {
    const pointer = join(this.dir, 'best.json');
    return existsSync(pointer) ? this.readIndex(pointer, bestSchema, 'best checkpoint index') : null;
  }

  private readIndex<S extends z.ZodType>(path: string, schema: S, what: string): z.infer<S> {
    const parsed = schema.safeParse(readJson<unknown>(path, what));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new TrqatError(`${what} ${path} is damaged (${issue.path.join('.') || 'the file'}: ${issue.message})`);
    }
    return parsed.data;
  }

  /** Removes the folders not kept and stale partial folders. */
  private prune(kept: Set<string>, best: string | null): void {
    for (const name of readdirSync(this.dir)) {
      if (name.endsWith('.partial') || (FOLDER.test(name) && !kept.has(name))) rmSync(join(this.dir, name), { recursive: true, force: true });
    }
    // keep_best turned off on a resume: a pointer to a pruned checkpoint goes with it
    if (best && !kept.has(best)) rmSync(join(this.dir, 'best.json'), { force: true });
  }
}

/** The sha256 of both halves of a checkpoint folder, read in chunks (checkpoints can be large). */
function checksums(folder: string): Record<(typeof FILES)[number], string> {
  const digest = (file: string): string => {
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(1 << 22);
    const fd = openSync(join(folder, file), 'r');
    try {
      for (let n = readSync(fd, buffer); n > 0; n = readSync(fd, buffer)) hash.update(buffer.subarray(0, n));
    } finally {
      closeSync(fd);
    }
    return hash.digest('hex');
  };
  return { 'worker.pt': digest('worker.pt'), 'controller.json': digest('controller.json') };
}
