// Scheduling as code, end to end: the examples' plug-ins with the real worker over real ZeroMQ, the
// CLI's exit codes and messages, and a resume that checks the plug-ins' code.
import { appendFileSync, copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { CLI, clientScript, readRun } from '../support/helpers.js';

const trqat = (args: string[], cwd: string) => execa('node', [CLI, ...args], { reject: false, cwd, all: true });

/** The example config and its two modules, copied into a fresh folder (a test edits them). */
function workspace(): string {
  const dir = mkdtempSync(join(tmpdir(), 'trqat-code-'));
  for (const file of ['scheduling-as-code.yaml', 'step-schedule.mjs', 'damp-late-flippers.mjs']) copyFileSync(resolve('examples', file), join(dir, file));
  return dir;
}
const onlyRun = (dir: string) => join(dir, 'runs', readdirSync(join(dir, 'runs'))[0]!);
const base = ['--dashboard', 'off', '--set', 'out_dir=runs'];

describe('scheduling as code, end to end', () => {
  it('trains with both example plug-ins, records them, and a resume refuses changed code unless allowed', async () => {
    const dir = workspace();
    const stopped = await trqat(['train', 'scheduling-as-code.yaml', ...base, '--set', 'train.steps=16', '--set', 'train.checkpoint_every=8'], dir);
    expect(stopped.exitCode, stopped.all).toBe(0);
    const run = onlyRun(dir);
    const { steps, info } = readRun(run);
    expect(steps).toHaveLength(16);
    expect(info.plugins?.map((p) => [p.role, p.name, p.module])).toEqual([
      ['schedule', 'step-schedule', join(dir, 'step-schedule.mjs')],
      ['talr', 'damp-late-flippers', join(dir, 'damp-late-flippers.mjs')],
    ]);
    // The step schedule (milestones 0.5 and 0.75 of 16 steps, factor 0.3), computed independently.
    const r0 = steps[0]!.R!;
    expect(steps.map((s) => s.R)).toEqual(steps.map((s) => r0 * 0.3 ** ((s.step >= 8 ? 1 : 0) + (s.step >= 12 ? 1 : 0))));
    // The per-layer rule: one LR per layer, every step.
    expect(steps.slice(1).every((s) => Array.isArray(s.lr_quant) && s.U_layers!.length === s.counts!.length)).toBe(true);
    const controller = JSON.parse(readFileSync(join(run, 'checkpoints', 'step-0000008', 'controller.json'), 'utf8')) as { controller: { plugins: unknown[] } };
    expect(controller.controller.plugins).toEqual(info.plugins);
  });

  it('a plug-in that decides NaN ends the run: exit 1, the plug-in and the step named, no traceback', async () => {
    const dir = workspace();
    copyFileSync(resolve('test/support/fixtures/plugins/nan-at-5.mjs'), join(dir, 'nan.mjs'));
    const result = await trqat(['train', 'scheduling-as-code.yaml', ...base, '--set', 'tr.talr={module: ./nan.mjs}'], dir);
    expect(result.exitCode, result.all).toBe(1);
    expect(result.all).toMatch(/a TALR rule plug-in "nan-at-5" \(.*nan\.mjs\) at step 5: update\(\) returned NaN/);
    expect(result.all).not.toMatch(/\n\s+at .*\.js:\d+/); // no stack
    const { steps, info } = readRun(onlyRun(dir));
    expect(info.status).toBe('failed');
    expect(steps.map((s) => s.step)).toEqual([0, 1, 2, 3, 4]); // step 5 was never decided
  });

  it('resume: a changed plug-in file is refused (exit 2), --allow-changed-plugins continues', async () => {
    const dir = workspace();
    const first = await trqat(['train', 'scheduling-as-code.yaml', ...base, '--set', 'train.steps=16', '--set', 'train.checkpoint_every=8', '--set', 'train.eval_every=8'], dir);
    expect(first.exitCode, first.all).toBe(0);
    const run = onlyRun(dir);
    // Back to the checkpoint of step 8, as a run stopped there would be.
    const info = JSON.parse(readFileSync(join(run, 'run.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(run, 'run.json'), JSON.stringify({ ...info, status: 'stopped', step: 8 }));
    const latest = JSON.parse(readFileSync(join(run, 'checkpoints', 'latest.json'), 'utf8')) as { committed: { step: number }[] };
    const eight = latest.committed.find((c) => c.step === 8)!;
    writeFileSync(join(run, 'checkpoints', 'latest.json'), JSON.stringify({ ...eight, committed: [eight] }));
    appendFileSync(join(dir, 'step-schedule.mjs'), '\n// edited\n');
    const refused = await trqat(['resume', run, '--dashboard', 'off'], dir);
    expect(refused.exitCode, refused.all).toBe(2);
    expect(refused.all).toMatch(/step-schedule\.mjs changed \(sha256 \w{12} at the checkpoint, \w{12} now\).*--allow-changed-plugins/);
    const allowed = await trqat(['resume', run, '--dashboard', 'off', '--allow-changed-plugins'], dir);
    expect(allowed.exitCode, allowed.all).toBe(0);
    expect(allowed.all).toMatch(/continuing with changed plug-in code/);
  });

  it('a client run (trqat run) schedules with the plug-ins too, and records them', async () => {
    const dir = workspace();
    const script = clientScript('--steps', '16');
    const result = await trqat(['run', '-c', 'scheduling-as-code.yaml', ...base, '--set', 'train.steps=16', '--', ...script], dir);
    expect(result.exitCode, result.all).toBe(0);
    const { steps, info } = readRun(onlyRun(dir));
    expect(info.kind).toBe('client');
    expect(info.plugins?.map((p) => p.name)).toEqual(['step-schedule', 'damp-late-flippers']);
    const r0 = steps[0]!.R!;
    expect(steps.map((s) => s.R)).toEqual(steps.map((s) => r0 * 0.3 ** ((s.step >= 8 ? 1 : 0) + (s.step >= 12 ? 1 : 0))));
  });
});
