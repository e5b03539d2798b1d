import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ResolvedConfig } from '../config/resolve.js';
import { TrqatError } from '../errors.js';

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
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new TrqatError(`cannot create the run folder ${dir}: ${(error as Error).message} (set out_dir to a writable folder)`);
  }
  return dir;
}
