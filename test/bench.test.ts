// The benchmark scripts and the reproduction study run on a tiny budget and print their tables.
// These are not timed tests: they check the scripts work, not how fast trqat is.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const script = (name: string) => join(import.meta.dirname, '..', 'scripts', 'bench', name);

async function bench(name: string, args: string[] = []): Promise<{ stdout: string; out: string }> {
  const out = mkdtempSync(join(tmpdir(), 'trqat-bench-'));
  const { stdout } = await run(process.execPath, [script(name), '--tiny', '--out', out, ...args], {
    maxBuffer: 16 * 1024 * 1024,
    env: { ...process.env, TRQAT_BENCH_MAX_WAIT_S: '0' },
  });
  return { stdout, out };
}

/** The rows of the markdown table titled `title` (a prefix of its heading). */
function rows(stdout: string, title: string): string[][] {
  const start = stdout.indexOf(`### ${title}`);
  expect(start, `table "${title}" in:\n${stdout}`).toBeGreaterThanOrEqual(0);
  const lines = stdout.slice(start).split('\n').slice(2);
  const table = lines.slice(0, lines.findIndex((l) => !l.startsWith('|')));
  return table.slice(2).map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
}

const number = /^-?\d+(\.\d+)?/;

/** The first row of a table (failing clearly when the table is empty). */
function first(table: string[][]): string[] {
  const row = table[0];
  if (!row) throw new Error('the table has no rows');
  return row;
}

describe('benchmarks on a tiny budget', () => {
  it('overhead.mjs prints the overhead and memory tables', async () => {
    const { stdout } = await bench('overhead.mjs');
    const overhead = first(rows(stdout, 'Overhead: trqat'));
    expect(overhead[0]).toBe('resnet20');
    expect(overhead[3]).toMatch(number); // plain ms/step
    expect(overhead[4]).toMatch(number); // trqat ms/step
    const memory = first(rows(stdout, 'Memory:'));
    expect(memory[3]).toBe('1.000'); // one byte of tracking state per quantized weight
  });

  it('bridge.mjs prints round trips and throughput', async () => {
    const { stdout } = await bench('bridge.mjs');
    const latency = rows(stdout, 'Bridge: round trip');
    expect(latency.map((r) => r[1])).toEqual(['bare', 'msgpack', 'protocol', 'trqat']);
    for (const row of latency) expect(row[2]).toMatch(number);
    const throughput = first(rows(stdout, 'Controller throughput'));
    expect(throughput[1]).toMatch(number);
  });

  it('scaling.mjs prints the scaling tables', async () => {
    const { stdout } = await bench('scaling.mjs');
    expect(first(rows(stdout, 'Scaling with model size'))[0]).toBe('resnet20');
    expect(rows(stdout, 'Scaling with the number of quantized layers: counting').length).toBe(2);
    expect(rows(stdout, 'Scaling with the number of quantized layers: controller').length).toBe(2);
  });

  it('export.mjs prints the size and latency tables', async () => {
    const { stdout } = await bench('export.mjs');
    const size = first(rows(stdout, 'Model size on disk'));
    expect(size[0]).toBe('resnet20');
    for (const cell of size.slice(5, 8)) expect(cell).toMatch(/^[\d,]+ \(\d+\.\d×\)$/);
    const latency = first(rows(stdout, 'CPU inference latency per image'));
    expect(latency.slice(0, 2)).toEqual(['resnet20', '1']);
    for (const cell of latency.slice(3, 6)) expect(cell).toMatch(number);
  });

  it('study.mjs runs the study end to end and writes its plots', async () => {
    const { stdout, out } = await bench('study.mjs');
    const grid = rows(stdout, 'TR scheduling against LR scheduling');
    expect(grid.map((r) => r[0])).toEqual(['W2A2', 'W1A1']);
    for (const row of grid) {
      expect(row[2]).toMatch(number);
      expect(row[3]).toMatch(number);
    }
    expect(rows(stdout, 'Sweeps').length).toBeGreaterThanOrEqual(3);
    const files = readdirSync(join(out, 'study-tiny'));
    for (const plot of ['k-vs-r.svg', 'u.svg', 'tr-under-lr.svg', 'curves.csv']) expect(files).toContain(plot);
    expect(readFileSync(join(out, 'study-tiny', 'k-vs-r.svg'), 'utf8')).toMatch(/^<svg/);
  });
});
