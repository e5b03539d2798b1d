// The ETA (eta.ts) and the step lines' cadence: from the first steps, at the pace of the recent ones.
import { describe, expect, it } from 'vitest';
import { EtaWindow } from '../src/eta.js';
import { eventFormatter, ProgressPrinter } from '../src/cli/progress.js';
import { RunData } from '../src/dashboard/run-data.js';
import { viewPayload } from '../src/dashboard/view.js';
import type { StepRecord } from '../src/run/metrics.js';
import type { RunEvent } from '../src/run/record.js';

/** A run's step times: a 20 s start-up, a slow first step (3 s), then 10 steps/s, then 5 steps/s from step 600. */
function timeOf(step: number): number {
  if (step === 0) return 1000 + 20;
  if (step <= 600) return 1023 + (step - 1) * 0.1;
  return 1023 + 599 * 0.1 + (step - 600) * 0.2;
}

const record = (step: number): StepRecord =>
  ({ type: 'step', step, epoch: step / 100, loss: 1, acc: 50, k: 1e-3, K: 1e-3, R: 1e-3, U: 0.01, lr_other: 0.1, steps_per_s: 1 / 23, time: timeOf(step), samples: 32, counts: null }) as unknown as StepRecord;

describe('EtaWindow', () => {
  it('estimates from the recent pace: right from step 3, and it follows a change of pace within the window', () => {
    const eta = new EtaWindow(60);
    eta.add(0, timeOf(0));
    expect(eta.eta(1000)).toBeNull(); // one step: no pace yet
    eta.add(1, timeOf(1));
    expect(eta.rate()).toBeCloseTo(1 / 3, 9); // the slow first step: all there is
    eta.add(2, timeOf(2));
    expect(eta.rate()).toBeCloseTo(10, 9); // from the third step on, the first no longer counts
    expect(eta.eta(1000)).toBeCloseTo(997 / 10, 6);
    for (let t = 3; t <= 400; t++) eta.add(t, timeOf(t));
    // steps 1..400 at 10 steps/s: exact.
    expect(eta.rate()).toBeCloseTo(10, 9);
    expect(eta.eta(1000)).toBeCloseTo(599 / 10, 6);
    // The whole run's average pace (what steps_per_s-style estimates drift towards) is lower early on.
    expect(401 / (timeOf(400) - 1000)).toBeLessThan(7);
    for (let t = 401; t <= 1000; t++) eta.add(t, timeOf(t));
    expect(eta.rate()).toBeCloseTo(5, 9); // 60 s after the pace halved, the window holds only the new pace
  });

  it('starts over on a replayed step (a resume) and after a pause longer than the window', () => {
    const eta = new EtaWindow(60);
    for (let t = 0; t < 50; t++) eta.add(t, 100 + t);
    eta.add(20, 200); // resumed from step 20
    expect(eta.rate()).toBeNull();
    eta.add(21, 200.5);
    expect(eta.rate()).toBeCloseTo(2, 9);
    eta.add(22, 5000); // a resumed run's log: hours later
    expect(eta.rate()).toBeNull();
  });
});

describe('the step lines', () => {
  it('print steps 1, 2, 5 and 10, then every log_every, each with an ETA from the recent pace', () => {
    const format = eventFormatter(50);
    const plan = { total_steps: 1000, steps_per_epoch: 100 } as unknown as Extract<RunEvent, { type: 'step' }>['plan'];
    const printed: string[] = [];
    for (let t = 0; t < 1000; t++) {
      const line = format({ type: 'step', record: record(t), plan } as RunEvent);
      if (line !== null) printed.push(line);
    }
    const steps = printed.map((line) => Number(/^step (\d+)\//.exec(line)![1]));
    expect(steps.slice(0, 6)).toEqual([1, 2, 5, 10, 50, 100]);
    expect(steps[steps.length - 1]).toBe(1000);
    expect(steps).toHaveLength(4 + 20);
    expect(printed[0]).not.toMatch(/ETA/); // one step: the pace is unknown, no made-up ETA
    expect(printed[1]).toContain('ETA 49m54s'); // after the slow first step: 998 steps at its pace (1/3 step/s)
    expect(printed[3]).toContain('ETA 1m39s'); // step 10: 990 steps at 10 steps/s
    // Step 50: 950 steps left at 10 steps/s (the start-up and the slow first step do not count).
    expect(printed[4]).toContain('ETA 1m35s');
    // Step 400: 10 steps/s over the window: 600 steps left = 1m00s.
    expect(printed.find((line) => line.startsWith('step 400/'))).toContain('ETA 1m00s');
  });

  it('the dashboard shows the same ETA as the CLI (one window)', () => {
    const data = new RunData('/tmp/run');
    data.setMeta({ info: { status: 'running', plan: { total_steps: 1000, steps_per_epoch: 100 } } as never });
    const eta = new EtaWindow();
    for (let t = 0; t < 400; t++) {
      data.add(record(t));
      eta.add(t, timeOf(t));
    }
    const view = viewPayload([data], { points: 100, heatmaps: false });
    expect(view.runs[0]!.latest!.eta_s).toBeCloseTo(eta.eta(1000)!, 9);
    expect(view.runs[0]!.latestText).toContainEqual(['ETA', '1m00s']);
  });
});

describe('the progress lines of long phases', () => {
  it('announce a one-operation phase at once, and count a counted one with its ETA (plain lines off a terminal)', () => {
    const out: string[] = [];
    let now = 0;
    const printer = new ProgressPrinter({ write: (text: string) => out.push(text) }, { write: (text: string) => out.push(text) }, () => null, () => now);
    printer.print({ type: 'progress', phase: 'worker', done: 0, total: null });
    now = 6000;
    printer.print({ type: 'progress', phase: 'model', done: 0, total: null });
    printer.print({ type: 'progress', phase: 'model', done: 0, total: null }); // said once
    for (let done = 0; done <= 100; done += 5) {
      now = 10_000 + done * 100; // 10 samples a second
      printer.print({ type: 'progress', phase: 'verify', done, total: 100 });
    }
    expect(out[0]).toBe('starting the worker (Python, importing torch)…\n');
    expect(out[1]).toBe('building the model…\n');
    expect(out.slice(2)).toEqual([
      'checking the file against the checkpoint (test samples): 20/100 (20%), ETA 8s\n',
      'checking the file against the checkpoint (test samples): 30/100 (30%), ETA 7s\n',
      'checking the file against the checkpoint (test samples): 40/100 (40%), ETA 6s\n',
      'checking the file against the checkpoint (test samples): 50/100 (50%), ETA 5s\n',
      'checking the file against the checkpoint (test samples): 60/100 (60%), ETA 4s\n',
      'checking the file against the checkpoint (test samples): 70/100 (70%), ETA 3s\n',
      'checking the file against the checkpoint (test samples): 80/100 (80%), ETA 2s\n',
      'checking the file against the checkpoint (test samples): 90/100 (90%), ETA 1s\n',
    ]);
  });
});
