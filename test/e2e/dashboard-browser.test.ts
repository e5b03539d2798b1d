// The dashboard in a real browser (Debian's chromium, driven by playwright-core) against real
// short runs: the live page while `train()` runs with the real worker, `trqat view` of two runs,
// and the report opened with the network disabled. Screenshots go to test/artifacts/.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sci } from '../../src/format.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import type { EvalRecord, StepRecord } from '../../src/run/metrics.js';
import type { RunEvent, RunSummary } from '../../src/run/record.js';
import { train } from '../../src/entry/train.js';
import { CLI, readRun, tinyConfig } from '../support/helpers.js';

const CHROMIUM = process.env['TRQAT_CHROMIUM'] ?? '/usr/bin/chromium';
/** Without the background-networking flags Chromium's own connections are refused on a closed network. */
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ARTIFACTS = join(PACKAGE_ROOT, 'test', 'artifacts');

/** A short run with small images: a few steps a second on one thread, so the page sees it grow. */
const RUN = [
  'data.synthetic.image_size=12',
  'data.batch_size=16',
  'train.eval_every=40',
  'train.checkpoint_every=0',
  'train.diagnostics_every=10',
  'train.log_every=40',
];

/** What the page holds: every chart's data, and the numbers it prints. */
interface Snapshot {
  charts: Record<string, (number | null)[][]>;
  /** Per chart, whose run and which metric each series after x is. */
  plotted: Record<string, { run: number; metric: string }[]>;
  printed: Record<string, string>;
  latestStep: number | null;
  status: string | null;
  distStep: number | null;
}

async function snapshot(page: Page): Promise<Snapshot> {
  return page.evaluate(() => {
    const t = (window as unknown as { trqat: { charts: Record<string, { data: (number | null)[][] }>; plotted: Record<string, { run: number; metric: string }[]>; payload: { runs: { status: string; latest: { step: number } | null; dist: { step: number } | null }[] } | null } }).trqat;
    const printed: Record<string, string> = {};
    document.querySelectorAll<HTMLElement>('#run-0 dd[data-metric]').forEach((dd) => (printed[dd.dataset['metric']!] = dd.textContent ?? ''));
    const run = t.payload?.runs[0];
    return {
      charts: Object.fromEntries(Object.entries(t.charts).map(([key, chart]) => [key, chart.data])),
      plotted: t.plotted,
      printed,
      latestStep: run?.latest?.step ?? null,
      status: run?.status ?? null,
      distStep: run?.dist?.step ?? null,
    };
  });
}

/** Heatmap values as the page draws them, at (row, step). */
async function heatValues(page: Page, id: string, cells: [number, number][]): Promise<(number | null)[]> {
  return page.evaluate(
    ([heatId, points]) => {
      const heatmaps = (window as unknown as { trqat: { heatmaps: Record<string, { valueAt(row: number, step: number): number | null }> } }).trqat.heatmaps;
      const heatmap = heatmaps[heatId];
      if (!heatmap) throw new Error(`no heatmap ${heatId}: ${Object.keys(heatmaps).join(', ')}`);
      return points.map(([row, step]) => heatmap.valueAt(row, step));
    },
    [id, cells] as const,
  );
}

/** The steps a heatmap covers (they may lag the series: a live page fetches heatmaps less often). */
async function heatEnd(page: Page, id: string): Promise<number> {
  return page.evaluate((heatId) => (window as unknown as { trqat: { heatmaps: Record<string, { data: { end: number } }> } }).trqat.heatmaps[heatId]!.data.end, id);
}

/** Non-blank pixels of every chart and heatmap canvas: each one drew something. */
async function inkedCanvases(page: Page): Promise<Record<string, number>> {
  return page.evaluate(() => {
    const out: Record<string, number> = {};
    document.querySelectorAll<HTMLCanvasElement>('canvas').forEach((canvas, i) => {
      const id = canvas.closest('[id]')?.id ?? `canvas-${i}`;
      const pixels = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      let inked = 0;
      for (let p = 3; p < pixels.length; p += 4) if (pixels[p]! > 0) inked++;
      out[id] = inked;
    });
    return out;
  });
}

const five = (value: number | null) => (value === null || !Number.isFinite(value) ? null : Number(value.toPrecision(5)));

/**
 * Every point the page's charts hold equals the run's own record at that step (to the 5
 * significant digits the page gets): the x of a point is its step, each series is the run and
 * metric the page says it plots, and every metric a run records is plotted (a baseline run has no
 * R and no U: those are left out). `runs` are the records of the runs shown, in order.
 */
function checkCharts(s: Snapshot, runs: { steps: StepRecord[]; evals: EvalRecord[] }[]): number {
  const bySteps = runs.map((run) => new Map(run.steps.map((r) => [r.step, r])));
  const byEvals = runs.map((run) => new Map(run.evals.map((r) => [r.step, r])));
  const metrics: Record<string, Record<string, (r: StepRecord) => number | null>> = {
    tr: { R: (r) => r.R, K: (r) => r.K, k: (r) => r.k },
    lr: { U: (r) => r.U, lr_other: (r) => r.lr_other },
    loss: { loss: (r) => r.loss },
    acc: { acc: (r) => r.acc },
    speed: { steps_per_s: (r) => r.steps_per_s },
  };
  let checked = 0;
  for (const [key, getters] of Object.entries(metrics)) {
    const [x, ...ys] = s.charts[key]!;
    const plotted = s.plotted[key]!;
    expect(ys).toHaveLength(plotted.length);
    // Every metric a run recorded is plotted, in the spec's order, and nothing else.
    const expected = runs.flatMap((run, r) => Object.entries(getters).filter(([, get]) => run.steps.some((step) => get(step) !== null)).map(([metric]) => ({ run: r, metric })));
    expect(plotted.map(({ run, metric }) => ({ run, metric }))).toEqual(expected);
    x!.forEach((step, i) => {
      plotted.forEach(({ run: r, metric }, j) => {
        const record = bySteps[r]!.get(step!);
        const shown = ys[j]![i];
        if (record === undefined) expect(shown ?? null).toBeNull(); // another run's step
        else {
          expect(shown ?? null, `${key} ${metric} of run ${r} at step ${step}`).toBe(five(getters[metric]!(record)));
          checked++;
        }
      });
    });
  }
  const [x, ...top1] = s.charts['top1']!;
  x!.forEach((step, i) => runs.forEach((_, r) => expect(top1[r]![i] ?? null).toBe(five(byEvals[r]!.get(step!)?.top1 ?? null))));
  expect(x!.length).toBeGreaterThan(0);
  return checked;
}

/** The page's status badge of the first run and its banner, once the badge shows `status`. */
async function waitForStatus(page: Page, status: string): Promise<{ badge: string; banner: string; bannerKind: string }> {
  await page.waitForFunction((wanted) => document.querySelector('#run-0 .status')?.textContent === wanted, status, { timeout: 20_000 });
  return page.evaluate(() => ({
    badge: document.querySelector('#run-0 .status')!.textContent ?? '',
    banner: document.getElementById('banner')!.hidden ? '' : (document.getElementById('banner')!.textContent ?? ''),
    bannerKind: document.getElementById('banner')!.dataset['kind'] ?? '',
  }));
}

/** A live run with its page open: `act` once the page shows a running step; resolves with how the run ended. */
async function watchLive(browser: Browser, overrides: string[], act: (runDir: string, stop: AbortController) => void): Promise<{ page: Page; errors: string[]; outcome: unknown }> {
  const stop = new AbortController();
  let resolveUrl!: (url: string) => void;
  const url = new Promise<string>((resolve) => (resolveUrl = resolve));
  let runDir = '';
  const run = train(tinyConfig([...RUN, ...overrides]), {
    signal: stop.signal,
    onEvent: (event) => {
      if (event.type === 'dashboard') resolveUrl(event.url);
      if (event.type === 'started') runDir = event.runDir;
    },
  }).then(
    (summary) => summary,
    (error: Error) => error,
  );
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(await url);
  await page.waitForFunction(() => (window as unknown as { trqat: { payload: { runs: { latest: unknown }[] } | null } }).trqat.payload?.runs[0]?.latest != null, null, { timeout: 60_000 });
  act(runDir, stop);
  return { page, errors, outcome: await run };
}

describe.skipIf(!existsSync(CHROMIUM))('the dashboard in a real browser (chromium)', () => {
  let browser: Browser;
  let live: { summary: RunSummary; events: RunEvent[] } | null = null;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('live: the page loads before the first step, fills while the run goes on, and shows its numbers', async () => {
    const config = tinyConfig([...RUN, 'train.steps=160']);
    const events: RunEvent[] = [];
    let resolveUrl!: (url: string) => void;
    const url = new Promise<string>((resolve) => (resolveUrl = resolve));
    const run = train(config, {
      onEvent: (event) => {
        events.push(event);
        if (event.type === 'dashboard') resolveUrl(event.url);
      },
    });
    let finished = false;
    void run.finally(() => (finished = true));
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(await url);
    expect(await page.title()).toContain(config.out_dir);

    // Watch the page while the run goes on: the number of steps it shows grows.
    const seen: number[] = [];
    let checkedLive = false;
    while (!finished) {
      const s = await snapshot(page).catch(() => null);
      if (s && s.status === 'running' && s.latestStep !== null) {
        if (seen[seen.length - 1] !== s.latestStep) seen.push(s.latestStep);
        if (!checkedLive && s.latestStep >= 80 && s.distStep !== null) {
          checkedLive = true;
          await page.screenshot({ path: join(ARTIFACTS, 'dashboard-live.png'), fullPage: true });
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const summary = await run;
    expect(summary.status).toBe('completed');
    expect(seen.length, `steps the page showed while running: ${seen.join(', ')}`).toBeGreaterThanOrEqual(3);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(checkedLive, 'the page reached step 80 while the run went on').toBe(true);

    // Every chart holds the run's numbers (the records the run emitted, also its metrics.jsonl).
    const records = readRun(summary.run_dir);
    const s = await snapshot(page);
    expect(checkCharts(s, [records])).toBeGreaterThan(500);
    // The numbers printed for the newest step the page got.
    const latest = records.steps.find((r) => r.step === s.latestStep)!;
    expect(s.printed).toMatchObject({ step: `${latest.step + 1}/160`, k: sci(latest.k), K: sci(latest.K), R: sci(latest.R), U: sci(latest.U), loss: latest.loss.toFixed(4) });

    // Heatmaps: transitions / weights per layer and step, and the distance measurements.
    const sizes = records.info.layers!.map((layer) => layer.numel);
    const covered = await heatEnd(page, 'heat-rate-0');
    expect(covered).toBeGreaterThan(50);
    const cells: [number, number][] = [];
    for (const t of [1, 13, 42, 77].filter((t) => t < covered)) for (const layer of [0, 5, sizes.length - 1]) cells.push([layer, t]);
    const rates = await heatValues(page, 'heat-rate-0', cells);
    cells.forEach(([layer, t], i) => expect(rates[i]).toBe(five(records.steps[t]!.counts![layer]! / sizes[layer]!)));
    const measuredEnd = await heatEnd(page, 'heat-distMean-0');
    const measured = records.steps.filter((r) => r.dist && r.step < measuredEnd);
    expect(measured.map((r) => r.step).slice(0, 3)).toEqual([0, 10, 20]);
    const meanCells: [number, number][] = measured.flatMap((r) => [0, 7].map((layer) => [layer, r.step] as [number, number]));
    const means = await heatValues(page, 'heat-distMean-0', meanCells);
    meanCells.forEach(([layer, t], i) => expect(means[i]).toBe(five(records.steps[t]!.dist!.mean[layer]!)));
    const shares = (step: number) => {
      const hist = records.steps[step]!.dist!.hist;
      const totals = hist[0]!.map((_, bin) => hist.reduce((sum, row) => sum + row[bin]!, 0));
      const weights = totals.reduce((a, b) => a + b, 0);
      expect(weights).toBe(sizes.reduce((a, b) => a + b, 0));
      return totals.map((count) => five(count / weights));
    };
    expect(s.charts['dist']![1]).toEqual(shares(s.distStep!)); // the newest measurement
    const drawn = measured[measured.length - 1]!.step;
    expect(await heatValues(page, 'heat-distHist-0', shares(drawn).map((_, bin) => [bin, drawn] as [number, number]))).toEqual(shares(drawn));

    const inked = await inkedCanvases(page);
    for (const id of ['chart-tr', 'chart-lr', 'chart-loss', 'chart-acc', 'chart-top1', 'chart-speed', 'chart-dist', 'heat-rate-0', 'heat-distMean-0', 'heat-distHist-0']) {
      expect(inked[id], `${id} drew nothing (canvases: ${JSON.stringify(inked)})`).toBeGreaterThan(1000);
    }
    // The run ended: the page learned it before its dashboard closed, and says how it ended.
    const ended = await waitForStatus(page, 'completed');
    expect(ended.banner).toMatch(/^The run completed\. Its dashboard has closed; report\.html in the run folder keeps this page\.$/);
    expect(ended.bannerKind).toBe('ended');
    await new Promise((resolve) => setTimeout(resolve, 2500)); // the page stopped polling: no "not answering" later
    expect(await page.textContent('#run-0 .status')).toBe('completed');
    expect(await page.textContent('#banner')).not.toMatch(/not answering/);
    expect(errors).toEqual([]);
    expect(events.some((e) => e.type === 'report')).toBe(true);
    live = { summary, events };
    await page.close();
  });

  it('trqat view overlays two runs; the report opens with the network off and renders the same', async () => {
    expect(live, 'the live test ran first').not.toBeNull();
    const baseline = await train(tinyConfig([...RUN, 'train.steps=60', 'mode=baseline']));
    const dirs = [live!.summary.run_dir, baseline.run_dir];
    const runs = dirs.map((dir) => readRun(dir));

    // trqat view: one page, both runs.
    const view = execa('node', [CLI, 'view', ...dirs], { reject: false });
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      view.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const match = /dashboard (http:\/\/\S+)/.exec(out);
        if (match) resolve(match[1]!);
      });
      void view.then((result) => reject(new Error(`view exited: ${result.stderr}`)));
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(url);
    await page.waitForFunction(() => Number(document.body.dataset['renders'] ?? 0) >= 1);
    const viewed = await snapshot(page);
    expect(checkCharts(viewed, runs)).toBeGreaterThan(900);
    expect(viewed.charts['tr']!.length).toBe(1 + 3 + 2); // R, K, k of the TR run; K, k of the baseline run (no R)
    const rows = await page.$$eval('#compare-table tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
    expect(rows.slice(1).map((row) => row.slice(0, 4))).toEqual([
      [runs[0]!.info && dirs[0]!.split('/').pop()!, 'tr', 'completed', '160/160'],
      [dirs[1]!.split('/').pop()!, 'baseline', 'completed', '60/60'],
    ]);
    expect(rows[1]![4]).toBe(`${runs[0]!.evals[runs[0]!.evals.length - 1]!.top1.toFixed(2)}%`);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-view.png'), fullPage: true });
    view.kill('SIGINT');
    expect((await view).exitCode).toBe(0);

    // The report of the same runs, opened offline: no request leaves the page, and it draws the same data.
    const out = join(ARTIFACTS, 'report.html');
    const made = await execa('node', [CLI, 'report', ...dirs, '-o', out]);
    expect(made.stdout).toBe(`report ${out}`);
    const context = await browser.newContext({ offline: true, viewport: { width: 1280, height: 900 } });
    const requests: string[] = [];
    await context.route('**/*', (route) => {
      if (!route.request().url().startsWith('file:')) requests.push(route.request().url());
      return route.request().url().startsWith('file:') ? route.continue() : route.abort();
    });
    const offline = await context.newPage();
    offline.on('pageerror', (error) => errors.push(error.message));
    await offline.goto(`file://${out}`);
    await offline.waitForFunction(() => Number(document.body.dataset['renders'] ?? 0) >= 1);
    const reported = await snapshot(offline);
    expect(reported.charts).toEqual(viewed.charts);
    expect(await heatValues(offline, 'heat-rate-1', [[3, 30]])).toEqual(await heatValues(page, 'heat-rate-1', [[3, 30]]));
    expect(requests).toEqual([]);
    await offline.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });

    // The report each run wrote into its folder at its end holds all of it.
    await offline.goto(`file://${join(dirs[0]!, 'report.html')}`);
    await offline.waitForFunction(() => Number(document.body.dataset['renders'] ?? 0) >= 1);
    const own = await snapshot(offline);
    expect(own.latestStep).toBe(159);
    expect(checkCharts(own, [runs[0]!])).toBeGreaterThan(800);
    expect(errors).toEqual([]);
    await context.close();
    await page.close();
  });

  it('live: a run stopped (Ctrl-C) shows "stopped" on its open page, not "running" beside "not answering"', async () => {
    const { page, errors, outcome } = await watchLive(browser, ['train.steps=400', 'train.eval_every=0'], (_dir, stop) => stop.abort());
    expect((outcome as RunSummary).status).toBe('stopped');
    const ended = await waitForStatus(page, 'stopped');
    expect(ended.banner).toMatch(/^The run was stopped\. Its dashboard has closed/);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('live: a failed run (its worker killed) shows "failed" and the error on its open page', async () => {
    const { page, errors, outcome } = await watchLive(browser, ['train.steps=400', 'train.eval_every=0', 'worker.max_restarts=0'], (runDir) =>
      process.kill(readRun(runDir).info.ranks[0]!.pid, 'SIGKILL'),
    );
    expect(outcome).toBeInstanceOf(Error);
    const ended = await waitForStatus(page, 'failed');
    expect(ended.bannerKind).toBe('error');
    expect(ended.banner).toMatch(/^The run failed\. .*worker.* Its dashboard has closed/s);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-failed.png') });
    expect(errors).toEqual([]);
    await page.close();
  });
});
