import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { ResolvedConfig } from '../config/resolve.js';
import { ConfigError, TrqatError } from '../errors.js';

/** Writes a file so that readers see the old content or the new one, never a torn one. */
export function writeFileAtomic(path: string, content: string): void {
  const temporary = `${path}.tmp-${process.pid}`;
  const fd = openSync(temporary, 'w');
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
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
export function createRunDir(config: ResolvedConfig): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const base = resolve(config.out_dir, `${config.name}-${stamp}`);
  let dir = base;
  for (let n = 2; existsSync(dir); n++) dir = `${base}-${n}`;
  try {
    makeDirs(dir);
  } catch (error) {
    throw new ConfigError(`cannot create the run folder ${dir}: ${(error as Error).message} (set out_dir to a writable folder)`);
  }
  return dir;
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdir never returns on some filesystems (/proc
 * answers ENOENT for a parent that exists), and a synchronous loop would not even let Ctrl-C in.
 */
export function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let path = resolve(dir); !existsSync(path); path = dirname(path)) {
    missing.unshift(path);
    if (dirname(path) === path) break;
  }
  for (const path of missing) mkdirSync(path);
}

/**
 * Marks a run folder as in use by this process (`run.lock` holds the pid): two controllers on one
 * folder would interleave its metrics and checkpoints. A lock whose process is gone is taken over.
 * Returns the function that releases it.
 */
export function lockRunDir(runDir: string): () => void {
  const path = join(runDir, 'run.lock');
  try {
    const fd = openSync(path, 'wx');
    writeSync(fd, String(process.pid));
    closeSync(fd);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const pid = Number(readFileSync(path, 'utf8'));
    if (pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new TrqatError(`${runDir} is in use by another trqat process (pid ${pid}); wait for it to end, or stop it first`);
    }
    writeFileSync(path, String(process.pid));
  }
  return () => rmSync(path, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
