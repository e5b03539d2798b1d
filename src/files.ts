import { chmodSync, closeSync, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConfigError, TrqatError, WriteError } from './errors.js';

export { WriteError };

/**
 * A run folder is its owner's alone, like a Jupyter server's files: its config, metrics,
 * checkpoints and the controller's secret are readable by no other local user. The folder is
 * created 0700 (nothing in it can be reached by others, whatever the worker's files' modes), and
 * every file the controller writes is 0600 from its creation on.
 */
export const RUN_DIR_MODE = 0o700;
export const RUN_FILE_MODE = 0o600;

/** Runs `write`, turning any failure into a WriteError that names `path`. */
export function writing<T>(path: string, write: () => T): T {
  try {
    return write();
  } catch (error) {
    throw error instanceof WriteError ? error : new WriteError(path, error);
  }
}

/** Writes all of `data` at the file's position (a write may take only part of it, e.g. when the disk fills). */
export function writeFully(fd: number, data: Buffer): void {
  for (let offset = 0; offset < data.length; ) offset += writeSync(fd, data, offset, data.length - offset);
}

/**
 * Writes a file so that readers see the old content or the new one, never a torn one. On any
 * failure the temporary is removed, the old content stays, and a WriteError names the file.
 * `mode`: the new file's permissions from its creation on (default: owner-only, RUN_FILE_MODE).
 */
export function writeFileAtomic(path: string, content: string, mode = RUN_FILE_MODE): void {
  const temporary = `${path}.tmp-${process.pid}`;
  try {
    const fd = openSync(temporary, 'w', mode);
    try {
      fchmodSync(fd, mode); // a stale temporary keeps its old mode otherwise
      writeFully(fd, Buffer.from(content));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, path);
  } catch (error) {
    removeQuietly(temporary);
    throw new WriteError(path, error);
  }
}

/** Removes a file or folder if it can; for clean-ups on a path that is already failing. */
export function removeQuietly(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // a read-only or vanished folder: nothing more can be done here
  }
}

export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

export function readJson<T>(path: string, what: string): T {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new TrqatError(`cannot read ${what} ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new TrqatError(`${what} ${path} is not valid JSON (${(error as Error).message}); the file is damaged`);
  }
}

/** A new run folder `<out_dir>/<name>-<YYYYMMDD-HHMMSS>[-N]`, for managed and served runs alike. */
export function createRunDir(config: { out_dir: string; name: string }): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const base = resolve(config.out_dir, `${config.name}-${stamp}`);
  let dir = base;
  for (let n = 2; existsSync(dir); n++) dir = `${base}-${n}`;
  try {
    makeDirs(dirname(dir));
    makeDirs(dir, RUN_DIR_MODE);
  } catch (error) {
    throw new ConfigError(`cannot create the run folder ${dir}: ${(error as Error).message} (set out_dir to a writable folder)`);
  }
  return dir;
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdir never returns on some filesystems (/proc
 * answers ENOENT for a parent that exists), and a synchronous loop would not even let Ctrl-C in.
 * `mode`: the new folders' permissions (a run folder's: RUN_DIR_MODE), exactly, whatever the umask.
 */
export function makeDirs(dir: string, mode?: number): void {
  const missing: string[] = [];
  for (let path = resolve(dir); !existsSync(path); path = dirname(path)) {
    missing.unshift(path);
    if (dirname(path) === path) break;
  }
  for (const path of missing) {
    mkdirSync(path, mode);
    if (mode !== undefined) chmodSync(path, mode);
  }
}

/**
 * Marks a run folder as in use by this process (`run.lock` holds the pid): two controllers on one
 * folder would interleave its metrics and checkpoints. A lock whose process is gone is taken over.
 * Returns the function that releases it.
 */
export function lockRunDir(runDir: string): () => void {
  const path = join(runDir, 'run.lock');
  const pid = Buffer.from(String(process.pid));
  try {
    const fd = openSync(path, 'wx', RUN_FILE_MODE);
    try {
      writeFully(fd, pid);
    } catch (error) {
      closeSync(fd);
      removeQuietly(path);
      throw new WriteError(path, error);
    }
    closeSync(fd);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error instanceof WriteError ? error : new WriteError(path, error);
    const owner = Number(readFileSync(path, 'utf8'));
    if (owner > 0 && owner !== process.pid && isAlive(owner)) {
      throw new TrqatError(`${runDir} is in use by another trqat process (pid ${owner}); wait for it to end, or stop it first`);
    }
    writing(path, () => writeFileSync(path, pid, { mode: RUN_FILE_MODE }));
  }
  return () => removeQuietly(path);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
