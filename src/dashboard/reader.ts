import { existsSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { join, resolve } from 'node:path';
import type { ResolvedConfig } from '../config/resolve.js';
import { TrqatError } from '../errors.js';
import { readJson } from '../files.js';
import { MetricsLineError, parseMetricsLine } from '../run/metrics.js';
import { notARunFolder, type RunSummary } from '../run/record.js';
import { RunData, type RunFileInfo } from './run-data.js';

/** The files of a run folder that the dashboard, the report and compare read. */
export const RUN_FILES = { config: 'config.json', info: 'run.json', summary: 'summary.json', metrics: 'metrics.jsonl' } as const;

/** Bytes read from metrics.jsonl at a time, so a 400 MB log is never held whole. */
const CHUNK_BYTES = 4 << 20;

/**
 * Reads a run folder into a RunData, and later whatever the run has added since: the record of a
 * finished run, or of one still running elsewhere (`trqat view` of a live folder). A resume
 * rewrites metrics.jsonl shorter; the reader then starts over.
 */
export class RunReader {
  private current: RunData;
  private offset = 0;
  private lineNumber = 0;
  /** The bytes after the last newline: a line still being written. */
  private partial = '';
  private metaStamp = '';
  /** The refresh in progress: concurrent callers share it (reads must not interleave). */
  private reading: Promise<void> | null = null;

  constructor(dir: string) {
    this.current = new RunData(resolve(dir));
  }

  get data(): RunData {
    return this.current;
  }

  /**
   * Reads everything new, a chunk at a time with a turn of the event loop between chunks (a live
   * run's heartbeats go on while a long log loads). Throws TrqatError for a folder that is not a
   * run, or a damaged file.
   */
  refresh(limit = Infinity): Promise<void> {
    this.reading ??= this.read(limit).finally(() => (this.reading = null));
    return this.reading;
  }

  private async read(limit: number): Promise<void> {
    const dir = this.data.dir;
    if (!existsSync(dir)) throw new TrqatError(`${dir} does not exist`);
    const files = Object.values(RUN_FILES);
    if (!files.some((file) => existsSync(join(dir, file)))) {
      throw notARunFolder(dir, `it has none of ${files.join(', ')}`);
    }
    this.refreshMeta();
    await this.refreshMetrics(limit);
  }

  /** Re-reads run.json, config.json and summary.json when they changed. */
  refreshMeta(): void {
    const dir = this.data.dir;
    const stamp = Object.values(RUN_FILES)
      .filter((file) => file !== RUN_FILES.metrics)
      .map((file) => stampOf(join(dir, file)))
      .join('|');
    if (stamp === this.metaStamp) return;
    this.metaStamp = stamp;
    const optional = <T>(file: string, what: string): T | null => (existsSync(join(dir, file)) ? readJson<T>(join(dir, file), what) : null);
    this.data.setMeta({
      config: optional<ResolvedConfig>(RUN_FILES.config, 'run config'),
      info: optional<RunFileInfo>(RUN_FILES.info, 'run status'),
      summary: optional<RunSummary>(RUN_FILES.summary, 'run summary'),
    });
  }

  /** Reads metrics.jsonl from where the last read stopped, up to `limit` bytes into the file. */
  private async refreshMetrics(limit: number): Promise<void> {
    const path = join(this.data.dir, RUN_FILES.metrics);
    if (!existsSync(path)) return;
    const size = Math.min(limit, statSync(path).size);
    if (size < this.offset) this.restart();
    if (size === this.offset) return;
    const file = await open(path, 'r');
    try {
      const buffer = Buffer.alloc(Math.min(CHUNK_BYTES, size - this.offset));
      while (this.offset < size) {
        const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, size - this.offset), this.offset);
        if (bytesRead === 0) break;
        this.offset += bytesRead;
        this.addText(buffer.toString('utf8', 0, bytesRead));
        await nextTurn();
      }
    } finally {
      await file.close();
    }
  }

  private addText(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) {
      this.lineNumber++;
      if (line.trim() === '') continue;
      try {
        this.data.add(parseMetricsLine(line, this.lineNumber));
      } catch (error) {
        if (error instanceof MetricsLineError) throw new TrqatError(`${join(this.data.dir, RUN_FILES.metrics)}, ${error.message}; the metrics log is damaged`);
        throw error;
      }
    }
  }

  /** The log was rewritten (a resume truncated it): read it again from the start. */
  private restart(): void {
    const fresh = new RunData(this.current.dir);
    fresh.version = this.current.version + 1;
    fresh.setMeta(this.current.meta);
    this.current = fresh;
    this.offset = this.lineNumber = 0;
    this.partial = '';
  }
}

/** Reads finished runs (or the state of running ones) for view, report and compare. */
export async function readRuns(dirs: readonly string[]): Promise<RunReader[]> {
  if (dirs.length === 0) throw new TrqatError('name at least one run folder, e.g. runs/run-20261129-170910', 2);
  const readers = dirs.map((dir) => new RunReader(dir));
  for (const reader of readers) await reader.refresh();
  return readers;
}

function stampOf(path: string): string {
  try {
    const stat = statSync(path);
    return `${stat.mtimeMs}:${stat.size}`;
  } catch {
    return '-';
  }
}
