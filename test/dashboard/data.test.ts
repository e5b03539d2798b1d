// The dashboard's data path without a browser: the metrics line schema, the log's timed flushes,
// downsampling against brute force, the reader on good and damaged folders, the comparison, the
// server's access rules, the --dashboard flag and the progress printer.
import { appendFileSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ProgressPrinter, formatEvent } from '../../src/cli/progress.js';
import { dashboardOverrides } from '../../src/cli/dashboard-flag.js';
import { compareCsv, compareRow, compareTable } from '../../src/dashboard/compare.js';
import { RunReader, readRuns } from '../../src/dashboard/reader.js';
import { RunData } from '../../src/dashboard/run-data.js';
import { BinnedRows, Columns, downsampleMinMax } from '../../src/dashboard/series.js';
import { DashboardServer } from '../../src/dashboard/server.js';
import { viewPayload } from '../../src/dashboard/view.js';
import { MetricsLog, parseMetricsLine, type StepRecord } from '../../src/run/metrics.js';
import type { RunEvent } from '../../src/run/record.js';

function step(t: number, extra: Partial<StepRecord> = {}): StepRecord {
  return {
    type: 'step',
    step: t,
    epoch: t / 10,
    k: t === 0 ? null : 0.001 * (1 + Math.sin(t)),
    K: 0.001,
    R: 0.002 * (1 - t / 1000),
    U: 0.1,
    lr_quant: 0.1,
    lr_other: 0.1,
    counts: t === 0 ? null : [t % 7, (3 * t) % 11],
    loss: 2 - t / 1000,
    acc: 50,
    samples: 32,
    steps_per_s: 10,
    time: 1000 + t / 10,
    ...extra,
  };
}

/** A run folder as a managed run writes it: config.json, run.json, metrics.jsonl (and summary.json when given). */
function runFolder(steps: number, options: { summary?: object; evals?: number[]; mode?: string } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'trqat-dash-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ mode: options.mode ?? 'tr', tr: { scope: 'network', r0: 0.002 } }));
  writeFileSync(
    join(dir, 'run.json'),
    JSON.stringify({
      status: options.summary ? 'completed' : 'running',
      checkpoint_step: 0,
      plan: { total_steps: steps, steps_per_epoch: 10, eval_every: 0, checkpoint_every: 0, controller: { momentum: 0.99, eta: 0.1 } },
      started: 'x',
      updated: 'x',
      layers: [
        { name: 'a', kind: 'conv', numel: 7, weight_bits: 2, act_bits: 2 },
        { name: 'b', kind: 'conv', numel: 11, weight_bits: 2, act_bits: 2 },
      ],
    }),
  );
  if (options.summary) writeFileSync(join(dir, 'summary.json'), JSON.stringify(options.summary));
  const log = new MetricsLog(join(dir, 'metrics.jsonl'));
  for (let t = 0; t < steps; t++) {
    log.write(step(t));
    if (options.evals?.includes(t + 1)) {
      log.write({ type: 'eval', step: t + 1, epoch: 0, top1: 40 + t / 10, loss: 1, samples: 10, seconds: 1, tracking_error: 0.3, time: 0 });
    }
  }
  log.close();
  return dir;
}

describe('the metrics line schema', () => {
  it('reads back what the run writes, NaN (null in the file) included', () => {
    const written = step(3, { loss: Number.NaN, dist: { hist: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]], mean: [0.3] } });
    const read = parseMetricsLine(JSON.stringify(written), 1);
    expect(read).toEqual(written);
    expect(JSON.stringify(written)).toContain('"loss":null');
  });

  it('names the line and the field of a bad record', () => {
    expect(() => parseMetricsLine('{"type":"step","step":"three"}', 7)).toThrow(/^line 7: step: /);
    expect(() => parseMetricsLine('{"type":"eval"', 2)).toThrow(/^line 2 is not JSON/);
    const dist = JSON.stringify(step(1, { dist: { hist: [[1, 2]], mean: [0.1] } }));
    expect(() => parseMetricsLine(dist, 3)).toThrow(/^line 3: dist\.hist\.0: /);
  });
});

describe('the metrics log', () => {
  it('writes in batches, yet no line waits longer than ~2 s to reach the disk (trqat view of a slow run)', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'trqat-log-')), 'metrics.jsonl');
    const log = new MetricsLog(path);
    const written: number[] = [];
    const appeared: number[] = [];
    const poll = () => {
      const now = Date.now();
      for (let n = MetricsLog.read(path).length; appeared.length < n; ) appeared.push(now);
    };
    // A slow trickle: a line every 300 ms for 2.4 s, then silence; the disk is watched every 50 ms.
    for (let t = 0; t < 8; t++) {
      log.write(step(t));
      written.push(Date.now());
      for (let i = 0; i < 6; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        poll();
      }
    }
    while (appeared.length < 8 && Date.now() - written[7]! < 4000) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      poll();
    }
    expect(appeared.length).toBe(8);
    const lags = appeared.map((at, i) => at - written[i]!);
    expect(Math.max(...lags), `lags: ${lags.join(', ')} ms`).toBeLessThanOrEqual(2500);
    expect(new Set(appeared).size, 'lines written together, not one write per line').toBeLessThan(8);
    log.close();
  }, 10_000);

  it.skipIf(!existsSync('/dev/full'))('a timed write that fails is thrown by the next write, not lost in the timer', async () => {
    const log = new MetricsLog('/dev/full'); // every write: ENOSPC
    log.write(step(0));
    await new Promise((resolve) => setTimeout(resolve, 2300));
    expect(() => log.write(step(1))).toThrow(/^cannot write \/dev\/full: no space left on device/i);
    expect(() => log.close()).not.toThrow(); // reported once
  });
});

describe('downsampling', () => {
  const columns = new Columns(['step', 'y'] as const);
  const n = 100_003;
  const ys: number[] = [];
  for (let t = 0; t < n; t++) {
    const y = Math.sin(t / 500) + (t % 977 === 0 ? 5 : 0) + (t === 77_777 ? -9 : 0);
    ys.push(y);
    columns.push({ step: t, y: t === 500 ? null : y });
  }

  /** Every bucket holds the minimum and maximum of its steps, in order; buckets tile the range. */
  function checkBuckets(out: ReturnType<typeof downsampleMinMax>, from: number, to: number, buckets: number): void {
    expect(out.step).toHaveLength(2 * buckets);
    expect(out.step[0]).toBe(from);
    expect(out.step[out.step.length - 1]).toBe(to - 1);
    const y = out.values['y']!;
    for (let b = 0; b < buckets; b++) {
      const [first, last] = [out.step[2 * b]!, out.step[2 * b + 1]!];
      if (b > 0) expect(first).toBe(out.step[2 * b - 1]! + 1);
      const slice = ys.slice(first, last + 1).filter((_, i) => first + i !== 500);
      const order = slice.indexOf(Math.min(...slice)) <= slice.indexOf(Math.max(...slice));
      const [lo, hi] = [Math.min(...slice), Math.max(...slice)].map((v) => Number(v.toPrecision(5)));
      expect([y[2 * b], y[2 * b + 1]]).toEqual(order ? [lo, hi] : [hi, lo]);
    }
  }

  it('keeps the minimum and maximum of every bucket, in order, at its first and last step', () => {
    const out = downsampleMinMax(columns, 'step', ['y'], 0, n, 1000);
    checkBuckets(out, 0, n, 1000);
    // The spikes survive: the global extremes are in the output.
    expect(Math.min(...out.values['y']!.map(Number))).toBeCloseTo(Math.min(...ys), 4);
    expect(Math.max(...out.values['y']!.map(Number))).toBeCloseTo(Math.max(...ys), 4);
    // A zoom reads bins and rows alike, from any row on.
    checkBuckets(downsampleMinMax(columns, 'step', ['y'], 12_345, 98_765, 300), 12_345, 98_765, 300);
    checkBuckets(downsampleMinMax(columns, 'step', ['y'], 70_001, 80_000, 1000), 70_001, 80_000, 1000);
  });

  it('recomputes its bins when a resume truncates the rows', () => {
    const copy = new Columns(['step', 'y'] as const);
    const half = 50_001;
    for (let t = 0; t < n; t++) copy.push({ step: t, y: t === 500 ? null : t >= half && t % 3 === 0 ? 1e6 : ys[t]! });
    copy.truncate(half); // the replayed steps bring other values
    for (let t = half; t < n; t++) copy.push({ step: t, y: ys[t]! });
    checkBuckets(downsampleMinMax(copy, 'step', ['y'], 0, n, 1000), 0, n, 1000);
  });

  it('returns the raw rows of a short range', () => {
    const start = columns.lowerBound('step', 499);
    const out = downsampleMinMax(columns, 'step', ['y'], start, start + 3, 100);
    expect(out.step).toEqual([499, 500, 501]);
    expect(out.values['y']).toEqual([Number(ys[499]!.toPrecision(5)), null, Number(ys[501]!.toPrecision(5))]);
  });
});

describe('binned per-layer rows', () => {
  it('are the exact means of their step ranges, however long the run', () => {
    const rows = new BinnedRows(3, 64);
    const values = (t: number) => [t, t % 5, t === 9_000 ? 100 : 0];
    const total = 10_000;
    for (let t = 0; t < total; t++) rows.add(t, values(t));
    const view = rows.view(0, Infinity, 16);
    expect(view.end).toBe(total);
    expect(view.x[0]).toBe(0);
    view.x.forEach((from, c) => {
      const to = c + 1 < view.x.length ? view.x[c + 1]! : total;
      for (let r = 0; r < 3; r++) {
        let sum = 0;
        for (let t = from; t < to; t++) sum += values(t)[r]!;
        expect(view.values[r]![c]).toBeCloseTo(sum / (to - from), 3);
      }
    });
    expect(view.x.length).toBeLessThanOrEqual(16);
    // A zoomed view: only the bins overlapping the range.
    const zoomed = rows.view(8_000, 9_999, 100);
    expect(zoomed.x[0]).toBeLessThanOrEqual(8_000);
    expect(zoomed.x[zoomed.x.length - 1]).toBeLessThanOrEqual(9_999);
  });
});

describe('the data of the page', () => {
  it('per-layer scope: K and U of every layer become heatmaps; the newest distance measurement gives the shares', () => {
    const data = new RunData('/runs/layer-scope');
    for (let t = 0; t < 40; t++) {
      const dist = t % 10 === 0 ? { hist: [[1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 3], [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], mean: [0.4, 0.01] } : undefined;
      data.add(step(t, { K_layers: [0.001 * t, 0.002], U_layers: [0.1, 0.1 + t / 100], ...(dist ? { dist } : {}) }));
    }
    const view = viewPayload([data], { points: 100 }).runs[0]!;
    expect(view.heatmaps!.K!.values[0]!.slice(0, 3)).toEqual([0, 0.001, 0.002]);
    expect(view.heatmaps!.U!.values[1]![39]).toBe(0.49);
    expect(view.heatmaps!.distMean!.x).toEqual([0, 10, 20, 30]);
    // 12 weights: layer 0 has 10 (3 of them at >= 0.5), layer 1 has 2 (both at < 0.05)
    const five = (v: number) => Number(v.toPrecision(5));
    expect(view.dist).toEqual({ step: 30, fractions: [3, 1, 1, 1, 1, 1, 1, 0, 0, 0, 3].map((n) => five(n / 12)), mean: five((0.4 * 10 + 0.01 * 2) / 12) });
    expect(view.heatmaps!.rate).toBeUndefined(); // no layer sizes known (no run.json)
  });
});

describe('the reader', () => {
  it('reads a run folder, follows what the run appends, and starts over after a resume truncates', async () => {
    const dir = runFolder(50);
    const reader = new RunReader(dir);
    await reader.refresh();
    expect(reader.data.scalars.length).toBe(50);
    // The rate heatmap holds counts / numel per layer.
    const rate = reader.data.rate!.view(0, Infinity, 1000);
    expect(rate.values[0]![rate.x.indexOf(10)]).toBeCloseTo((10 % 7) / 7, 4);
    expect(rate.values[1]![rate.x.indexOf(10)]).toBeCloseTo(30 % 11 / 11, 4);
    appendFileSync(join(dir, 'metrics.jsonl'), `${JSON.stringify(step(50))}\n${JSON.stringify(step(51)).slice(0, 20)}`);
    await reader.refresh();
    expect(reader.data.scalars.length).toBe(51); // the torn last line waits for its end
    appendFileSync(join(dir, 'metrics.jsonl'), `${JSON.stringify(step(51)).slice(20)}\n`);
    await reader.refresh();
    expect(reader.data.scalars.length).toBe(52);
    MetricsLog.truncate(join(dir, 'metrics.jsonl'), 20);
    await reader.refresh();
    expect(reader.data.scalars.length).toBe(20);
  });

  it('refuses a folder that is not a run, and names a damaged line', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'trqat-dash-'));
    await expect(readRuns([empty])).rejects.toThrow(/is not a trqat run folder \(it has none of config.json, run.json.*\); a run folder, .* holds config\.json, run\.json, metrics\.jsonl and checkpoints\//);
    await expect(readRuns([join(empty, 'missing')])).rejects.toThrow(/does not exist/);
    await expect(readRuns([])).rejects.toThrow(/name at least one run folder/);
    const dir = runFolder(5);
    appendFileSync(join(dir, 'metrics.jsonl'), 'garbage\n');
    appendFileSync(join(dir, 'metrics.jsonl'), `${JSON.stringify(step(6))}\n`);
    await expect(readRuns([dir])).rejects.toThrow(/metrics\.jsonl, line 6 is not JSON .*; the metrics log is damaged/);
    writeFileSync(join(dir, 'run.json'), '{"status": ');
    await expect(readRuns([dir])).rejects.toThrow(/run status .*run\.json is not valid JSON/);
  });
});

describe('the comparison', () => {
  it('gives final and best top-1, tracking error, the late transition rate, steps and time', async () => {
    const summary = { run_dir: 'x', status: 'completed', step: 100, total_steps: 100, final_top1: 49.9, best_top1: 49.9, final_loss: 1, tracking_error: 0.25, elapsed_s: 75 };
    const [a] = await readRuns([runFolder(100, { summary, evals: [50, 100] })]);
    const row = compareRow(a!.data);
    const k = Array.from({ length: 10 }, (_, i) => 0.001 * (1 + Math.sin(90 + i)));
    expect(row).toMatchObject({ mode: 'tr', status: 'completed', steps: 100, total_steps: 100, final_top1: 49.9, best_top1: 49.9, tracking_error: 0.25, time_s: 75 });
    expect(row.late_k).toBeCloseTo(k.reduce((x, y) => x + y) / 10, 12);
    const table = compareTable([row]);
    expect(table.split('\n')[0]).toMatch(/^run +mode +status +steps +final top-1 +best top-1 +tracking error +late k \(last 10%\) +time$/);
    expect(table.split('\n')[2]).toMatch(/ tr +completed +100\/100 +49\.90% +49\.90% +0\.250 +\d\.\d\de-\d +1m15s$/);
    expect(compareCsv([row]).split('\n')[1]).toMatch(/,tr,completed,100,100,49\.9,49\.9,0\.25,0\.00\d+,75$/);
  });
});

describe('the dashboard server', () => {
  it('on loopback too: every request needs the token of the printed URL (like Jupyter), and a loopback Host name (no DNS rebinding)', async () => {
    const [reader] = await readRuns([runFolder(30)]);
    const server = await DashboardServer.start({ host: '127.0.0.1', port: 0, title: 't', runs: () => [reader!.data] });
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{24}$/);
      const url = new URL(server.url);
      const token = url.searchParams.get('token')!;
      const base = `http://127.0.0.1:${url.port}`;
      // Another local user reaches the port but not the token: nothing of the run.
      expect((await fetch(`${base}/`)).status).toBe(403);
      const refused = await fetch(`${base}/api/view?points=100`);
      expect(refused.status).toBe(403);
      expect(await refused.text()).toMatch(/open the URL the dashboard printed \(it holds the token\)/);
      expect((await fetch(`${base}/api/view?points=100&token=${token.slice(0, -1)}`)).status).toBe(403);
      expect((await fetch(server.url)).status).toBe(200);
      const view = await fetch(`${base}/api/view?points=100&token=${token}`);
      expect(view.status).toBe(200);
      const payload = (await view.json()) as ReturnType<typeof viewPayload>;
      expect(payload.runs[0]!.series.step).toHaveLength(30);
      const unchanged = await fetch(`${base}/api/view?points=100&since=${payload.version}&token=${token}`);
      expect(unchanged.status).toBe(204);
      const rebound = await new Promise<number>((resolve) => {
        // fetch() does not let a page set Host; a raw request does, as a rebinding attacker's browser would.
        import('node:http').then(({ request }) =>
          request({ host: '127.0.0.1', port: url.port, path: `/api/view?token=${token}`, headers: { Host: `evil.example:${url.port}` } }, (res) => resolve(res.statusCode!)).end(),
        );
      });
      expect(rebound).toBe(403);
    } finally {
      await server.close();
    }
  });

  it('settle(): waits for an open page to fetch the runs as they are now, and not at all without a page', async () => {
    const [reader] = await readRuns([runFolder(5)]);
    const server = await DashboardServer.start({ host: '127.0.0.1', port: 0, title: 't', runs: () => [reader!.data] });
    try {
      let started = Date.now();
      await server.settle(2000);
      expect(Date.now() - started).toBeLessThan(100); // no page ever asked
      const view = (query = '') => fetch(`${server.url}&points=50${query}`.replace('/?', '/api/view?'));
      const first = (await (await view()).json()) as ReturnType<typeof viewPayload>;
      reader!.data.setActivity({ phase: 'eval', done: 1, total: 2 }); // the run changed after the page's last poll
      started = Date.now();
      const polled = new Promise<number>((resolve) => setTimeout(() => void view(`&since=${first.version}`).then((r) => resolve(r.status)), 300));
      await server.settle(2000);
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      expect(Date.now() - started).toBeLessThan(1500);
      expect(await polled).toBe(200); // the page got the new version, not a cached one
      started = Date.now();
      await server.settle(400); // a page that polled a moment ago but does not come back: bounded
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      await server.close();
    }
  });

  it('beyond loopback: every request needs the token of the printed URL', async () => {
    const [reader] = await readRuns([runFolder(3)]);
    const server = await DashboardServer.start({ host: '0.0.0.0', port: 0, title: 't', runs: () => [reader!.data] });
    try {
      const url = new URL(server.url);
      const token = url.searchParams.get('token')!;
      expect(token).toMatch(/^[\w-]{24}$/);
      const base = `http://127.0.0.1:${url.port}`;
      expect((await fetch(`${base}/api/view`)).status).toBe(403);
      expect((await fetch(`${base}/api/view?token=${token.slice(1)}`)).status).toBe(403);
      expect((await fetch(`${base}/api/view?token=${token}x`)).status).toBe(403);
      expect((await fetch(`${base}/api/view?token=${token}`)).status).toBe(200);
      const page = await fetch(`${base}/?token=${token}`);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-security-policy')).toContain("connect-src 'self'");
    } finally {
      await server.close();
    }
  });
});

describe('the --dashboard flag', () => {
  it('stands for config overrides', () => {
    expect(dashboardOverrides('off')).toEqual(['dashboard.enabled=false']);
    expect(dashboardOverrides('0.0.0.0:8080')).toEqual(['dashboard.enabled=true', 'dashboard.host="0.0.0.0"', 'dashboard.port=8080']);
    expect(dashboardOverrides(':8080')).toEqual(['dashboard.enabled=true', 'dashboard.port=8080']);
    expect(dashboardOverrides('[::1]:9000')).toEqual(['dashboard.enabled=true', 'dashboard.host="::1"', 'dashboard.port=9000']);
    expect(() => dashboardOverrides('host:http')).toThrow(/use off, on, HOST, HOST:PORT or :PORT/);
  });
});

describe('the progress printer', () => {
  const progress = (done: number, total: number | null): RunEvent => ({ type: 'progress', phase: 'eval', done, total });

  function printer(isTTY: boolean) {
    let now = 0;
    const out: string[] = [];
    const p = new ProgressPrinter({ write: (text: string) => out.push(text), isTTY }, { write: (text: string) => out.push(text) }, (e) => formatEvent(e, 1), () => now);
    return { p, out, tick: (ms: number) => (now += ms) };
  }

  it('without a terminal: plain lines every 10% of a long phase, no control characters', () => {
    const { p, out, tick } = printer(false);
    p.print(progress(100, 10_000)); // a phase's start: silent for 2 s (a quick evaluation says nothing)
    for (let done = 200; done < 10_000; done += 200) {
      tick(100);
      p.print(progress(done, 10_000));
    }
    p.print(progress(10_000, 10_000));
    p.print({ type: 'warning', message: 'w' });
    expect(out.join('')).not.toMatch(/[\r\x1b]/);
    expect(out).toEqual([
      // 2,000 samples a second: the ETA of what is left
      'evaluating: 4,000/10,000 (40%), ETA 3s\n',
      'evaluating: 5,000/10,000 (50%), ETA 3s\n',
      'evaluating: 6,000/10,000 (60%), ETA 2s\n',
      'evaluating: 7,000/10,000 (70%), ETA 2s\n',
      'evaluating: 8,000/10,000 (80%), ETA 1s\n',
      'evaluating: 9,000/10,000 (90%), ETA 1s\n',
      'warning: w\n',
    ]);
  });

  it('on a terminal: one status line, rewritten, cleared before the next line', () => {
    const { p, out, tick } = printer(true);
    p.print(progress(1, 4));
    tick(3000);
    p.print(progress(2, 4));
    p.print({ type: 'warning', message: 'w' });
    expect(out).toEqual(['\revaluating: 2/4 (50%), ETA 6s\x1b[K', '\r\x1b[K', 'warning: w\n']);
  });

  it('a quick phase prints nothing', () => {
    const { p, out } = printer(false);
    p.print(progress(1, 2));
    p.print(progress(2, 2));
    expect(out).toEqual([]);
  });
});
