// The page's tools in a real browser (chromium), on a report of two synthetic runs (a per-layer TR
// run and a baseline run with the same LR schedule): smoothing, log scale, CSV, one layer's lines,
// legends without absent series, identical curves told apart, the top-1 axis; and the bundling of
// the page's modules (html.ts: bundlePage).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundlePage } from '../../src/dashboard/html.js';
import { readRuns } from '../../src/dashboard/reader.js';
import { reportHtml } from '../../src/dashboard/report.js';
import { niceTicks } from '../../src/dashboard/ticks.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { MetricsLog } from '../../src/run/metrics.js';

const CHROMIUM = process.env['TRQAT_CHROMIUM'] ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const STEPS = 300;
const NUMELS = [100, 400, 1000];
const five = (value: number) => Number(value.toPrecision(5));

/** The ordinary LR both runs share, the TR run's per-layer counts and its noisy loss. */
const lr = (t: number) => 0.1 * Math.cos((Math.PI * t) / (2 * STEPS));
const counts = (t: number) => NUMELS.map((n, i) => Math.round(n * 0.01 * (1 + i) * (1 + Math.sin(t / 7 + i)) + 1));
const loss = (t: number, run: number) => 2 * Math.exp(-t / 100) + 0.3 * Math.sin(t * 1.7 + run) + 0.4;

function syntheticRun(mode: 'tr' | 'baseline'): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'trqat-page-')), mode === 'tr' ? 'tr-run' : 'baseline-run');
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ mode, tr: { scope: 'layer', r0: 0.01 } }));
  const plan = { total_steps: STEPS, steps_per_epoch: 100, eval_every: 100, checkpoint_every: 0, controller: { momentum: 0.9, eta: 0.1 } };
  const layers = NUMELS.map((numel, i) => ({ name: `layer${i}`, kind: 'conv', numel, weight_bits: 2, act_bits: 2 }));
  writeFileSync(join(dir, 'run.json'), JSON.stringify({ status: 'completed', checkpoint_step: 0, plan, started: 'x', updated: 'x', layers }));
  const log = new MetricsLog(join(dir, 'metrics.jsonl'));
  const run = mode === 'tr' ? 0 : 1;
  for (let t = 0; t < STEPS; t++) {
    const c = counts(t);
    const R = mode === 'tr' ? 0.01 * (1 - t / STEPS) + 1e-4 : null;
    const perLayer = mode === 'tr' ? { K_layers: c.map((n, i) => n / NUMELS[i]! + 1e-4), U_layers: NUMELS.map((_, i) => 0.01 * (i + 1)) } : {};
    log.write({ type: 'step', step: t, epoch: t / 100, k: t === 0 ? null : 0.02, K: 0.01 + run * 1e-3, R, U: R === null ? null : 0.05, lr_quant: 0.1, lr_other: lr(t), ...perLayer, counts: t === 0 ? null : c, loss: loss(t, run), acc: 50 + t / 10, samples: 8, steps_per_s: 10, time: 1000 + t / 10 });
    if ((t + 1) % 100 === 0) log.write({ type: 'eval', step: t + 1, epoch: (t + 1) / 100, top1: 97.5 + t / 150, loss: 0.1, samples: 100, seconds: 1, tracking_error: mode === 'tr' ? 0.1 : null, time: 1000 + t / 10 });
  }
  log.close();
  return dir;
}

/** TensorBoard's debiased EMA, written out here again (the page's own is smooth.ts). */
function tensorboardEma(values: (number | null)[], weight: number): (number | null)[] {
  let last = 0;
  let n = 0;
  return values.map((v) => {
    if (v === null) return null;
    last = last * weight + (1 - weight) * v;
    n++;
    return last / (1 - Math.pow(weight, n));
  });
}

type Plotted = { run: number; metric: string; label: string }[];
const pageState = <T>(page: Page, read: string): Promise<T> => page.evaluate(`(() => { const t = window.trqat; return ${read}; })()`) as Promise<T>;

describe('round heatmap ticks', () => {
  it('multiples of 1, 2 or 5 times a power of ten, inside the range; whole steps', () => {
    expect(niceTicks(0, 300, 5, true)).toEqual([0, 50, 100, 150, 200, 250, 300]);
    expect(niceTicks(17, 161, 5, true)).toEqual([20, 40, 60, 80, 100, 120, 140, 160]);
    expect(niceTicks(0, 3, 5, true)).toEqual([0, 1, 2, 3]);
    expect(niceTicks(0.001, 0.0042, 4)).toEqual([0.001, 0.002, 0.003, 0.004]);
    expect(niceTicks(5, 5)).toEqual([5]);
  });
});

describe('bundlePage: the page modules as one script', () => {
  const modules = (files: Record<string, string>) => {
    const dir = mkdtempSync(join(tmpdir(), 'trqat-bundle-'));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return join(dir, 'main.js');
  };
  it('puts every import first, once, and drops the import lines and export keywords', () => {
    const bundle = bundlePage(modules({ 'main.js': "import { a } from './a.js';\nimport { b } from './b.js';\nconsole.log(a, b);\n", 'a.js': "import { b } from './b.js';\nexport const a = b + 1;\n", 'b.js': 'export const b = 1;\nexport {};\n' }));
    expect(bundle.replace(/^\/\/ .*\n/gm, '').replace(/\n+/g, '\n')).toBe('const b = 1;\nconst a = b + 1;\nconsole.log(a, b);\n');
  });
  it('refuses what one shared scope cannot express: a name two modules declare, a renamed import', () => {
    expect(() => bundlePage(modules({ 'main.js': "import { a } from './a.js';\nfunction a2() {}\nconst x = 1;\n", 'a.js': 'export const a = 1;\nconst x = 2;\n' }))).toThrow(/a\.js and \S+main\.js both declare x: rename one/);
    expect(() => bundlePage(modules({ 'main.js': "import { a as b } from './a.js';\n", 'a.js': 'export const a = 1;\n' }))).toThrow(/cannot rename imports \(a as b\)/);
    expect(() => bundlePage(modules({ 'main.js': "import { a } from './gone.js';\n" }))).toThrow(/gone\.js \(imported by \S+main\.js\) is missing: build trqat first/);
  });
  it('the real page: no file of src/dashboard/page over 400 lines, and the bundle has no import left', () => {
    const folder = join(PACKAGE_ROOT, 'src', 'dashboard', 'page');
    for (const file of readdirSync(folder)) expect(readFileSync(join(folder, file), 'utf8').split('\n').length, file).toBeLessThanOrEqual(400);
    const bundle = bundlePage();
    expect(bundle).not.toMatch(/^(import|export) /m);
    expect(bundle).toContain('function smoothEma(');
  });
});

describe.skipIf(!existsSync(CHROMIUM))('the page tools in chromium', () => {
  let browser: Browser;
  let page: Page;
  const errors: string[] = [];
  let downloads = '';

  beforeAll(async () => {
    const readers = await readRuns([syntheticRun('tr'), syntheticRun('baseline')]);
    const dir = mkdtempSync(join(tmpdir(), 'trqat-page-'));
    const file = join(dir, 'report.html');
    writeFileSync(file, reportHtml(readers.map((reader) => reader.data)));
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
    downloads = dir;
    page = await context.newPage();
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`file://${file}`);
    await page.waitForFunction(() => Number(document.body.dataset['renders'] ?? 0) >= 1);
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  it('legends list only the series a run has: no R and no U for the baseline run', async () => {
    const plotted = await pageState<Record<string, Plotted>>(page, 't.plotted');
    expect(plotted['tr']!.map((p) => p.label)).toEqual(['tr-run: R', 'tr-run: K', 'tr-run: k', 'baseline-run: K', 'baseline-run: k']);
    expect(plotted['lr']!.map((p) => p.label)).toEqual(['tr-run: U', 'tr-run: LR', 'baseline-run: LR']);
    const legend = await page.$$eval('#chart-lr .u-legend .u-label', (labels) => labels.map((l) => l.textContent));
    expect(legend).toEqual(['step', 'tr-run: U', 'tr-run: LR', 'baseline-run: LR']);
    expect(errors).toEqual([]);
  });

  it('an identical curve drawn over another is dashed so both show; different curves keep their look', async () => {
    const dashes = await pageState<Record<string, (number[] | null)[]>>(page, "Object.fromEntries(['lr', 'tr'].map((k) => [k, t.charts[k].series.slice(1).map((s) => s.dash ?? null)]))");
    expect(dashes['lr']).toEqual([null, [6, 4], [2, 6]]); // the baseline's LR equals the TR run's
    // R dashed by its spec; the runs' K differ; the runs' measured k are equal here: the second is dashed.
    expect(dashes['tr']).toEqual([[6, 4], null, null, null, [8, 8]]);
  });

  it('the evaluation axis stays within 0-100%', async () => {
    const y = await pageState<{ min: number; max: number }>(page, "({ min: t.charts['top1'].scales.y.min, max: t.charts['top1'].scales.y.max })");
    expect(y.max).toBe(100); // top-1 up to 99.5%: the margin would reach 101
    expect(y.min).toBeGreaterThanOrEqual(0);
    expect(y.min).toBeLessThan(97.5);
  });

  it("smoothing: TensorBoard's debiased EMA of the plotted points, on loss and not on the schedules", async () => {
    const raw = await pageState<(number | null)[][]>(page, "t.payload.runs.map((r) => r.series.values.loss)");
    const lrBefore = await pageState<unknown>(page, "t.charts['lr'].data");
    await page.$eval('#smoothing', (input) => {
      (input as HTMLInputElement).value = '0.6';
      input.dispatchEvent(new Event('input'));
    });
    const [, ...ys] = await pageState<(number | null)[][]>(page, "t.charts['loss'].data");
    expect(ys).toHaveLength(2);
    ys.forEach((y, r) => {
      const expected = tensorboardEma(raw[r]!, 0.6);
      y!.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 12));
    });
    expect(ys[0]![0]).toBeCloseTo(raw[0]![0]!, 12); // debiased: the first point is not pulled to 0
    expect(await pageState<unknown>(page, "t.charts['lr'].data")).toEqual(lrBefore);
    expect(await page.textContent('#smoothing-value')).toBe('0.60');
  });

  it('CSV: the plotted data, as drawn, downloads as a file', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#csv-loss')]);
    expect(download.suggestedFilename()).toBe('loss.csv');
    const path = join(downloads, 'loss.csv');
    await download.saveAs(path);
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('step,tr-run: loss,baseline-run: loss');
    const data = await pageState<number[][]>(page, "t.charts['loss'].data");
    expect(lines).toHaveLength(1 + STEPS);
    expect(lines[42]!.split(',').map(Number)).toEqual([data[0]![41], data[1]![41], data[2]![41]]);
  });

  it('log scale on the loss', async () => {
    await page.check('#log-loss');
    expect(await pageState<number>(page, "t.charts['loss'].scales.y.distr")).toBe(3);
    await page.uncheck('#log-loss');
    expect(await pageState<number>(page, "t.charts['loss'].scales.y.distr")).toBe(1);
  });

  it("one chosen layer's k, K and U as lines (the baseline run has k only)", async () => {
    await page.selectOption('#layer-select', '2');
    const plotted = await pageState<Plotted>(page, "t.plotted['layer']");
    expect(plotted.map((p) => p.label)).toEqual(['tr-run: k', 'tr-run: K', 'tr-run: U', 'baseline-run: k']);
    const [x, k, K, U, kBaseline] = await pageState<(number | null)[][]>(page, "t.charts['layer'].data");
    const rate = (t: number) => five(counts(t)[2]! / NUMELS[2]!);
    expect(x!.slice(0, 3)).toEqual([0, 1, 2]);
    expect([k![0] ?? null, kBaseline![0] ?? null]).toEqual([null, null]); // step 0 counts no transitions
    x!.forEach((t, i) => {
      if (t === 0) return;
      expect(k![i]).toBe(rate(t!));
      expect(kBaseline![i]).toBe(rate(t!));
      expect(K![i]).toBe(five(counts(t!)[2]! / NUMELS[2]! + 1e-4));
      expect(U![i]).toBe(0.03);
    });
    expect(errors).toEqual([]);
  });
});
