// The charts' axis tick labels: the formatter, its inlining into the page, and a log axis of small
// rates as chromium draws it in a report (uPlot's default labelled every tick below 1e-3 "0").
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { pageHtml } from '../../src/dashboard/html.js';
import { readRuns } from '../../src/dashboard/reader.js';
import { reportHtml } from '../../src/dashboard/report.js';
import { tickLabel, tickLabels } from '../../src/dashboard/ticks.js';
import { MetricsLog } from '../../src/run/metrics.js';

const CHROMIUM = process.env['TRQAT_CHROMIUM'] ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

describe('tick labels', () => {
  it('write small and large values in exponent notation, without float noise', () => {
    expect([1e-4, 3 * 1e-5, 2.5e-4, 9e-4, -2e-5].map(tickLabel)).toEqual(['1e-4', '3e-5', '2.5e-4', '9e-4', '-2e-5']);
    expect([0.001, 0.0015, 0.1 + 0.2, 0.25, 1, 12345, 0].map(tickLabel)).toEqual(['0.001', '0.0015', '0.3', '0.25', '1', '12345', '0']);
    expect([1e6, 2.5e7].map(tickLabel)).toEqual(['1e6', '2.5e7']);
  });

  it('leave the ticks uPlot filtered out (null) blank', () => {
    expect(tickLabels(null, [1e-5, null, 3e-5])).toEqual(['1e-5', '', '3e-5']);
  });

  it('are inlined into the page: its module script imports nothing', () => {
    const html = pageHtml({ title: 't' });
    const script = html.slice(html.indexOf('<script type="module">'));
    expect(script).toContain('function tickLabel(');
    expect(script).not.toMatch(/^import /m);
  });
});

/** A finished run whose R, K and k lie between 1e-5 and 2e-4. */
function smallRateRun(steps: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'trqat-ticks-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ mode: 'tr', tr: { scope: 'network', r0: 2e-4 } }));
  const plan = { total_steps: steps, steps_per_epoch: 10, eval_every: 0, checkpoint_every: 0, controller: { momentum: 0.99, eta: 0.1 } };
  writeFileSync(join(dir, 'run.json'), JSON.stringify({ status: 'completed', checkpoint_step: 0, plan, started: 'x', updated: 'x', layers: [{ name: 'a', kind: 'conv', numel: 7, weight_bits: 2, act_bits: 2 }] }));
  const log = new MetricsLog(join(dir, 'metrics.jsonl'));
  for (let t = 0; t < steps; t++) {
    const R = 2e-4 * 10 ** (-t / steps); // 2e-4 down to 2e-5
    log.write({ type: 'step', step: t, epoch: t / 10, k: R, K: R, R, U: 0.1, lr_quant: 0.1, lr_other: 0.1, counts: [1], loss: 1, acc: 50, samples: 8, steps_per_s: 10, time: t });
  }
  log.close();
  return dir;
}

describe.skipIf(!existsSync(CHROMIUM))('a log axis in chromium', () => {
  it('labels ticks below 1e-3 with their values', async () => {
    const readers = await readRuns([smallRateRun(200)]);
    const file = join(mkdtempSync(join(tmpdir(), 'trqat-ticks-')), 'report.html');
    writeFileSync(file, reportHtml(readers.map((reader) => reader.data)));
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      await page.goto(`file://${file}`);
      await page.waitForFunction(() => Number(document.body.dataset['renders'] ?? 0) >= 1);
      await page.check('#log-tr');
      const labels = await page.evaluate(() => {
        const chart = (window as unknown as { trqat: { charts: Record<string, { axes: { _values?: string[] }[] }> } }).trqat.charts['tr']!;
        return (chart.axes[1]!._values ?? []).filter((label) => label !== '');
      });
      expect(errors).toEqual([]);
      expect(labels).toContain('1e-4');
      for (const label of labels) expect(label).toMatch(/^(\d(\.\d+)?e-[45]|0\.001)$/); // the axis may reach 1e-3
    } finally {
      await browser.close();
    }
  }, 30_000);
});
