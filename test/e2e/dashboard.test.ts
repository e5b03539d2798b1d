// End to end without a browser: what a script's own logger gets from client.step(), the report a
// resumed run writes, and the CLI's view commands (--dashboard off, compare, report) on real runs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { runScript } from '../../src/entry/serve.js';
import type { RunEvent } from '../../src/run/record.js';
import { resume, train } from '../../src/entry/train.js';
import type { ViewPayload } from '../../src/dashboard/view.js';
import { CLI, clientScript, readRun, tinyConfig } from '../support/helpers.js';

/** The data a report embeds. */
function reportPayload(path: string): ViewPayload {
  const match = /<script type="application\/json" id="trqat-data">(.*?)<\/script>/s.exec(readFileSync(path, 'utf8'));
  if (!match) throw new Error(`no embedded data in ${path}`);
  return JSON.parse(match[1]!) as ViewPayload;
}

describe('the numbers where users log them', () => {
  it('client.step() returns the k, K, R and U the run logs for that step', async () => {
    const config = loadConfig(null, [
      `out_dir=${tinyConfig().out_dir}`,
      'tr.lambda=0.02',
      'tr.momentum=0.5',
      'train.diagnostics_every=3',
      'worker.heartbeat_interval_ms=200',
      'worker.heartbeat_timeout_ms=3000',
    ]);
    const events: RunEvent[] = [];
    const result = await runScript(config, clientScript('--steps', '8'), { stdio: 'pipe', onEvent: (e) => events.push(e as RunEvent) });
    expect(result.exitCode, result.stderr).toBe(0);
    const schedule = JSON.parse(/^schedule (.+)$/m.exec(result.stdout)![1]!) as [number, number | null, number, number, number][];
    const { steps } = readRun(result.runDir);
    expect(schedule).toHaveLength(8);
    expect(schedule).toEqual(steps.map((s) => [s.step, s.k, s.K, s.R, s.U]));
    expect(schedule[0]![1]).toBeNull(); // no k on the first step
    expect(schedule.slice(1).every(([, k]) => k !== null && k >= 0)).toBe(true);
    // The client sends the distance measurements too, every 3 steps.
    expect(steps.filter((s) => s.dist).map((s) => s.step)).toEqual([0, 3, 6]);
    // A client run has its dashboard and its report like a managed run.
    expect(events.find((e) => e.type === 'dashboard')).toMatchObject({ url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{24}$/) });
    expect(reportPayload(join(result.runDir, 'report.html')).runs[0]!.series.step).toEqual(steps.map((s) => s.step));
  });
});

describe('the record of a resumed run', () => {
  it('the live feed continues from the log the resume kept: the report holds every step once', async () => {
    const stop = new AbortController();
    const first = await train(tinyConfig(['train.eval_every=0', 'train.checkpoint_every=0', 'train.diagnostics_every=5']), {
      signal: stop.signal,
      onEvent: (event) => {
        if (event.type === 'step' && event.record.step === 11) stop.abort();
      },
    });
    expect(first.status).toBe('stopped');
    const events: RunEvent[] = [];
    const resumed = await resume(first.run_dir, { onEvent: (e) => events.push(e) });
    expect(resumed.status).toBe('completed');
    // The evaluation reported its progress on the way (the worker's `progress` messages).
    expect(events.filter((e) => e.type === 'progress').pop()).toEqual({ type: 'progress', phase: 'eval', done: 128, total: 128 });
    const report = reportPayload(join(first.run_dir, 'report.html'));
    const { steps } = readRun(first.run_dir);
    expect(report.runs[0]!.series.step).toEqual(Array.from({ length: 24 }, (_, t) => t));
    expect(report.runs[0]!.series.values['K']).toEqual(steps.map((s) => Number(s.K.toPrecision(5))));
    expect(report.runs[0]!.status).toBe('completed');
    expect(report.runs[0]!.compare.steps).toBe(24);
    // The heatmap counts each step once (a step replayed twice would double its weight in the mean).
    const sizes = readRun(first.run_dir).info.layers!.map((l) => l.numel);
    const rate = report.runs[0]!.heatmaps!.rate!;
    expect(rate.x).toEqual(Array.from({ length: 23 }, (_, t) => t + 1));
    expect(rate.values[2]).toEqual(steps.slice(1).map((s) => Number((s.counts![2]! / sizes[2]!).toPrecision(5))));
  });
});

describe('the CLI', () => {
  it('train --dashboard off: no dashboard, plain output, the report at the end; compare and report read the folder', async () => {
    const out = tinyConfig().out_dir;
    const sets = ['out_dir=' + out, 'name=cli', 'data.name=synthetic', 'data.synthetic.train_size=64', 'data.synthetic.test_size=32', 'data.synthetic.image_size=12', 'data.batch_size=16', 'train.steps=8', 'train.log_every=4', 'worker.threads=1', 'worker.device=cpu'];
    const result = await execa('node', [CLI, 'train', ...sets.flatMap((s) => ['--set', s]), '--dashboard', 'off'], { reject: false });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).not.toMatch(/dashboard http/);
    expect(result.stdout + result.stderr).not.toMatch(/[\r\x1b]/); // not a terminal: no control characters
    const runDir = /run folder: (\S+)/.exec(result.stdout)![1]!;
    expect(result.stdout).toContain(`report ${join(runDir, 'report.html')}`);
    expect(readRun(runDir).config.dashboard).toMatchObject({ enabled: false });

    const table = await execa('node', [CLI, 'compare', runDir]);
    const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8')) as { final_top1: number };
    expect(table.stdout.split('\n')[2]).toMatch(new RegExp(`^cli-\\S+ +tr +completed +8/8 +${summary.final_top1.toFixed(2)}%`));
    const csv = await execa('node', [CLI, 'compare', runDir, runDir, '--csv']);
    const lines = csv.stdout.split('\n');
    expect(lines[0]).toBe('run,dir,mode,status,steps,total_steps,final_top1,best_top1,tracking_error,late_k,time_s');
    expect(lines.slice(1).map((l) => l.split(',')[6])).toEqual([String(summary.final_top1), String(summary.final_top1)]);

    const missing = await execa('node', [CLI, 'compare', join(out, 'nope')], { reject: false });
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toBe(`trqat: ${join(out, 'nope')} does not exist`);
    const notRun = await execa('node', [CLI, 'report', out, '-o', join(out, 'r.html')], { reject: false });
    expect(notRun.exitCode).toBe(2);
    expect(notRun.stderr).toMatch(/^trqat: \S+ is not a trqat run folder \(it has none of config\.json, run\.json, summary\.json, metrics\.jsonl\); a run folder, .* holds .*checkpoints\/$/);
    const usage = await execa('node', [CLI, 'view'], { reject: false });
    expect(usage.exitCode).toBe(2);
    expect(usage.stderr).toMatch(/missing required argument 'run-dir'/);
    expect(usage.stderr).toMatch(/trqat <command> --help/);
  });
});
