// The benchmark scripts and the reproduction study run on a tiny budget and print their tables.
// These are not timed tests: they check the scripts work, not how fast trqat is.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const script = (name: string) => join(import.meta.dirname, '..', '..', 'scripts', 'bench', name);

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

describe('the study\'s statistics', () => {
  it('Welch\'s t-test gives R\'s t.test() on Student\'s sleep data', async () => {
    const lib = script('lib.mjs');
    const { welch } = (await import(lib)) as { welch: (x: number[], y: number[]) => { t: number; df: number; p: number } | null };
    const x = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0];
    const y = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4];
    // R: t.test(extra ~ group, data = sleep): t = -1.8608, df = 17.776, p-value = 0.07939
    const out = welch(x, y)!;
    expect(out.t).toBeCloseTo(-1.8608, 4);
    expect(out.df).toBeCloseTo(17.776, 3);
    expect(out.p).toBeCloseTo(0.07939, 5);
    expect(welch([1, 2], [3])).toBeNull();
  });
});

describe('the benchmark scripts\' command lines (commander)', () => {
  // Every script; the modules the scripts share are not commands.
  const modules = ['lib.mjs', 'svg.mjs', 'full-disk.mjs'];
  const scripts = readdirSync(join(import.meta.dirname, '..', '..', 'scripts', 'bench')).filter((name) => name.endsWith('.mjs') && !modules.includes(name));

  it.each(scripts)('%s --help lists its options', async (name) => {
    const { stdout } = await run(process.execPath, [script(name), '--help']);
    expect(stdout).toMatch(new RegExp(`^Usage: ${name.replace('.', '\\.')} \\[options\\]`));
    if (name !== 'trqat_run.mjs') expect(stdout).toMatch(/--tiny .*--out <dir>/s);
  });

  it('bad usage exits 2 naming the problem', async () => {
    for (const args of [['--tinny'], ['--budget', 'huge'], ['--reps', 'x']]) {
      const refused = await run(process.execPath, [script('bridge.mjs'), ...args]).then(
        () => null,
        (error: { code: number; stderr: string }) => error,
      );
      expect(refused?.code, args.join(' ')).toBe(2);
      expect(refused?.stderr).toMatch(/unknown option '--tinny'|argument 'huge' is invalid|argument 'x' is invalid. expected a whole number/);
    }
  });
});

describe('benchmarks on a tiny budget', () => {
  it('overhead.mjs prints the overhead and memory tables', async () => {
    const { stdout } = await bench('overhead.mjs');
    const overhead = first(rows(stdout, 'Overhead: trqat'));
    expect(overhead[0]).toBe('resnet20');
    expect(overhead[3]).toMatch(number); // plain ms/step
    expect(overhead[4]).toMatch(number); // trqat ms/step
    expect(overhead[9]).toMatch(number); // the loop as a user's script under `trqat run`, ms/step
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

  it('plugins.mjs prints the decision time of the built-ins and of the example plug-ins', async () => {
    const { stdout } = await bench('plugins.mjs');
    const table = rows(stdout, 'Controller plug-ins: decision time');
    expect(table.map((row) => row[0])).toEqual(expect.arrayContaining([expect.stringMatching(/^built-in/), expect.stringMatching(/^examples/)]));
    for (const row of table.slice(0, 2)) {
      expect(Number(row[1])).toBeGreaterThan(0);
      expect(row[2]).toMatch(/^\d+\.\d{3}%$/);
    }
  });

  it('dashboard.mjs prints load, view and report figures of a long synthetic run', async () => {
    const { stdout } = await bench('dashboard.mjs');
    const table = rows(stdout, 'Dashboard:');
    const row = (what: string) => table.find((r) => r[0]!.startsWith(what)) ?? [];
    expect(row('load: reader')[2]).toMatch(/^\d+\.\d+ s$/);
    expect(row('view: whole run')[3]).toMatch(/^\d+ KiB JSON$/);
    expect(row('live: one step record')[2]).toMatch(/^\d+\.\d µs\/step$/);
    expect(row('report.html')[3]).toMatch(/^\d+ KiB$/);
  });

  it('ddp.mjs prints the data-parallel table', async () => {
    const { stdout } = await bench('ddp.mjs');
    const table = rows(stdout, 'Data parallelism on the CPU');
    expect(table.map((r) => r[0])).toEqual(['trqat, 1 rank', 'trqat, 2 ranks', 'plain DDP loop, 2 ranks']);
    for (const row of table) expect(row[1]).toMatch(number);
    expect(table[1]![3]).toMatch(number);
    expect(table[1]![4]).toMatch(number);
  });

  it('gpu.mjs prints both GPU tables (here on the CPU, at tiny sizes)', { timeout: 300_000 }, async () => {
    const md = join(mkdtempSync(join(tmpdir(), 'trqat-gpu-md-')), 'gpu.md');
    const { stdout, out } = await bench('gpu.mjs', ['--md', md]);
    for (const title of ['GPU: ResNet-18 on ImageNet-shaped', 'GPU: ResNet-20, CIFAR-sized']) {
      const table = rows(stdout, title);
      expect(table.map((r) => r[0])).toEqual(['plain PyTorch QAT loop', 'trqat']);
      for (const row of table) {
        expect(row[1]).toMatch(number); // steps/s
        expect(row[3]).toMatch(number); // ms/step
        expect(row[6]).toBe('n/a'); // no GPU memory on the CPU
      }
      expect(table[1]![4]).toMatch(number); // the ratio
    }
    expect(readdirSync(join(out, 'gpu'))).toContain('results-tiny.json');
    // --md holds the last table written (ResNet-20's, after ResNet-18's)
    expect(readFileSync(md, 'utf8')).toMatch(/### GPU: ResNet-18[^]*### GPU: ResNet-20/);
  });

  it('gpu-share.mjs prints the counting share and the processes table (here on the CPU, at tiny sizes)', async () => {
    const { stdout } = await bench('gpu-share.mjs');
    const share = rows(stdout, 'Counting share of a step');
    expect(share.map((r) => r[0])).toEqual(['resnet20', 'resnet18']);
    for (const row of share) for (const cell of row.slice(2, 7)) expect(cell).toMatch(number); // with the eager-counting columns
    const procs = rows(stdout, 'Processes sharing one GPU');
    expect(procs.map((r) => r[1])).toEqual(['1', '2']);
    expect(procs[0]![4]).toBe('1.00x');
    expect(Number(procs[1]![3])).toBeGreaterThan(0);
  }, 300_000);

  it('regress.mjs builds a ref in a worktree, times both sides, and fails past --max-ratio', async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-regress-'));
    const args = [script('regress.mjs'), '--tiny', '--out', out, '--against', 'HEAD', '--cases', 'default', '--max-ratio', '1e-9'];
    const failed = await run(process.execPath, args, { env: { ...process.env, TRQAT_BENCH_MAX_WAIT_S: '0' } }).then(
      () => null,
      (error: { code: number; stdout: string }) => error,
    );
    expect(failed?.code).toBe(1); // any ratio is above 1e-9
    const table = rows(failed!.stdout, 'Speed guard: this checkout against HEAD');
    expect(table.map((r) => r[1]!.split(' ')[0])).toEqual(['HEAD', 'this', 'ratio']);
    for (const row of table.slice(0, 2)) for (const cell of row.slice(2, 6)) expect(cell).toMatch(number);
    expect(table[2]![8]).toMatch(/^FAIL/);
    const wrong = await run(process.execPath, [script('regress.mjs'), '--tiny', '--against', 'no-such-ref-xyz']).catch((e: { code: number; stderr: string }) => e);
    expect(wrong).toMatchObject({ code: 2, stderr: expect.stringMatching(/no-such-ref-xyz is not a git ref/) });
  }, 300_000);

  it('reliability.mjs kills a worker and damages a checkpoint, both runs survive, and a second start tries nothing again', async () => {
    const { stdout, out } = await bench('reliability.mjs');
    const table = rows(stdout, 'Reliability: faults tried, survived, lost');
    expect(table.map((r) => r.slice(0, 4))).toEqual([
      ['1. worker SIGKILL at a random step', '1', '1', '0'],
      ['6. newest checkpoint damaged after a stopped run', '1', '1', '0'],
    ]);
    expect(table[0]![4]).toMatch(/^\d+\.\d\d s$/); // kill → exit
    const trials = readFileSync(join(out, 'reliability', 'trials.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { scenario: string; seed: number; fault: { error?: string; fallback?: number } });
    expect(trials.map((t) => [t.scenario, t.seed])).toEqual([['worker-kill', 1000], ['corrupt-checkpoint', 6000]]);
    expect(trials[0]!.fault.error).toMatch(/rank 0 was killed by SIGKILL/);
    expect(trials[1]!.fault.fallback).toBeGreaterThanOrEqual(4);
    const again = await run(process.execPath, [script('reliability.mjs'), '--tiny', '--out', out]);
    expect(again.stderr).toMatch(/0 trials to go \(2 there/);
    expect(rows(again.stdout, 'Reliability: faults tried')).toEqual(table);
  }, 300_000); // a reference run and two trials of two CLI runs each

  it('study.mjs runs the study end to end, writes its plots, and resumes without running anything again', async () => {
    const { stdout, out } = await bench('study.mjs');
    const grid = rows(stdout, 'TR scheduling against LR scheduling');
    expect(grid.map((r) => `${r[0]} / ${r[1]}`)).toEqual(['W2A2 SGD / LR scheduling', 'W2A2 SGD / TR, paper text', 'W2A2 SGD / TR, released code']);
    for (const row of grid) expect(row[2]).toMatch(number);
    for (const row of grid.filter((r) => r[1]?.startsWith('TR'))) expect(row[5]).toMatch(number); // tracking error
    expect(rows(stdout, 'Significance').map((r) => r[1])).toEqual(['TR, paper text − LR scheduling', 'TR, released code − LR scheduling', 'TR, released code − TR, paper text']);
    expect(rows(stdout, 'Sweeps').length).toBe(2);
    const dir = join(out, 'study-tiny');
    const files = readdirSync(dir);
    for (const plot of ['k-vs-r-w2a2-sgd.svg', 'u-w2a2-sgd.svg', 'k-w2a2-sgd.svg', 'study.md']) expect(files).toContain(plot);
    expect(readFileSync(join(dir, 'k-vs-r-w2a2-sgd.svg'), 'utf8')).toMatch(/^<svg/);
    expect(readdirSync(join(dir, 'results'))).toHaveLength(7); // the FP model, 3 arms, 2 sweep points and the LR run of the longer one
    const again = await run(process.execPath, [script('study.mjs'), '--tiny', '--out', out], { maxBuffer: 16 * 1024 * 1024 });
    expect(again.stderr).toMatch(/0 QAT runs to go \(6 done\)/);
    expect(rows(again.stdout, 'TR scheduling against LR scheduling')).toEqual(grid);
  }, 300_000); // seven short runs on a 2-core machine that may be busy
});
