// End to end, through the real CLI: what a resume refuses, rebuilds or falls back from.
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, execaSync } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolvePython } from '../../src/bridge/launcher.js';
import { startTraining } from '../../src/entry/train.js';
import { CLI, readRun, tinyConfig } from '../support/helpers.js';

const STEPS = 16;

/** A run stopped after step 9: checkpoints of steps 4, 8 and `last` (the stop's own, 10 to 12). */
let stopped = '';
let last = 0;

beforeAll(async () => {
  const config = tinyConfig([`train.steps=${STEPS}`, 'train.eval_every=0', 'train.checkpoint_every=4']);
  let runDir = '';
  const handle = await startTraining(config, {
    onEvent: (event) => {
      if (event.type === 'started') runDir = event.runDir;
      if (event.type === 'step' && event.record.step === 9) handle.stop();
    },
  });
  await handle.done;
  stopped = runDir;
  last = readRun(stopped).info.checkpoint_step;
  expect(last).toBeGreaterThan(8);
  expect(last).toBeLessThanOrEqual(12);
}, 120_000);

/** A copy of the stopped run to tamper with. */
function copyRun(): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'trqat-tamper-')), 'run');
  cpSync(stopped, dir, { recursive: true });
  return dir;
}

/** Rewrites one half of the checkpoint of `step` and its sha256 in latest.json, as a tamperer who knows the index would. */
function tamper(runDir: string, step: number, file: 'controller.json' | 'worker.pt', write: (path: string) => void): string {
  const folder = `step-${String(step).padStart(7, '0')}`;
  const path = join(runDir, 'checkpoints', folder, file);
  write(path);
  const sha = createHash('sha256').update(readFileSync(path)).digest('hex');
  const indexPath = join(runDir, 'checkpoints', 'latest.json');
  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { path: string; sha256: Record<string, string>; committed: { path: string; sha256: Record<string, string> }[] };
  for (const commit of [index, ...index.committed]) if (commit.path === folder) commit.sha256[file] = sha;
  writeFileSync(indexPath, JSON.stringify(index));
  return join(runDir, 'checkpoints', folder);
}

function editController(runDir: string, step: number, edit: (state: { controller: Record<string, unknown> }) => void): string {
  return tamper(runDir, step, 'controller.json', (path) => {
    const state = JSON.parse(readFileSync(path, 'utf8')) as { controller: Record<string, unknown> };
    edit(state);
    writeFileSync(path, JSON.stringify(state));
  });
}

async function resumeCli(runDir: string) {
  return execa('node', [CLI, 'resume', runDir], { reject: false });
}

describe('a resume checks what it continues from', () => {
  it('a controller state with a value out of range (K: "abc", U: 1e308) is skipped, naming the checkpoint and the key; the previous intact one is used', async () => {
    for (const [key, value] of [['K', 'abc'], ['U', 1e308]] as const) {
      const runDir = copyRun();
      const bad = editController(runDir, last, (state) => {
        state.controller[key] = value;
      });
      const result = await resumeCli(runDir);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stderr).not.toMatch(/Traceback|at .*\.js:\d+/);
      expect(result.stderr).toContain(`checkpoint ${bad} holds an invalid controller state: controller.${key}`);
      expect(result.stderr).toMatch(/using the checkpoint of step 8 instead/);
      expect(result.stdout).toMatch(/resuming at step 8/);
      const { steps, info } = readRun(runDir);
      expect(info.status).toBe('completed');
      expect(steps.map((s) => s.step)).toEqual(Array.from({ length: STEPS }, (_, t) => t));
      expect(steps.every((s) => s.U !== null && Number.isFinite(s.U) && s.U < 1e6)).toBe(true);
    }
  }, 240_000);

  it('a crafted worker.pt (a pickle that would run code) is refused without a traceback and the previous intact checkpoint is used', async () => {
    const runDir = copyRun();
    const bad = tamper(runDir, last, 'worker.pt', (path) => {
      const script = 'import os, sys, torch\nclass Evil:\n    def __reduce__(self):\n        return (os.system, ("touch /tmp/trqat-pwned",))\ntorch.save({"format": "trqat-safe-1", "x": Evil()}, sys.argv[1])\n';
      const made = execaSync(resolvePython(null), ['-c', script, path], { reject: false });
      if (made.exitCode !== 0) throw new Error(String(made.stderr));
    });
    const result = await resumeCli(runDir);
    expect(existsSync('/tmp/trqat-pwned')).toBe(false);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).not.toMatch(/Traceback/);
    expect(result.stderr).toMatch(new RegExp(`checkpoint ${bad} was refused by the worker: worker\\.pt is unreadable or corrupt: holds pickled objects that would run code .*; using the checkpoint of step 8 instead`));
    const { steps, info } = readRun(runDir);
    expect(info.status).toBe('completed');
    expect(steps.map((s) => s.step)).toEqual(Array.from({ length: STEPS }, (_, t) => t));
  }, 240_000);

  it('a config.json that lost a section is rebuilt from the checkpoint (and said so), not resumed with defaults', async () => {
    const runDir = copyRun();
    const configPath = join(runDir, 'config.json');
    const original = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    const { worker: _, ...rest } = original;
    writeFileSync(configPath, JSON.stringify(rest));
    const result = await resumeCli(runDir);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/config\.json lacks worker: rebuilt from the config recorded in the checkpoint of step \d+/);
    expect(JSON.parse(readFileSync(configPath, 'utf8')).worker).toEqual(original.worker);
  }, 120_000);

  it('a missing or cut metrics.jsonl is refused with exit 2 (the history would be lost), and the run folder is left as it was', async () => {
    const runDir = copyRun();
    rmSync(join(runDir, 'metrics.jsonl'));
    const before = readFileSync(join(runDir, 'run.json'), 'utf8');
    const result = await resumeCli(runDir);
    expect(result.exitCode, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/metrics\.jsonl .* holds no step before the checkpoint of step \d+: the history of steps 0-\d+ is missing/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(readFileSync(join(runDir, 'run.json'), 'utf8')).toBe(before);
    expect(existsSync(join(runDir, 'metrics.jsonl'))).toBe(false);
  }, 120_000);
});
