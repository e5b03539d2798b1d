// A full disk at every write: real ENOSPC from the kernel, on a small tmpfs mounted in a user+mount
// namespace (`unshare -rm`), so no root and no real disk are needed. Skipped, with the reason, where
// the machine allows no such namespace.
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/paths.js';

const MOUNT = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"';

/** Runs `command` in a new user+mount namespace with a tmpfs of `size` at a fresh folder (its last argument is that folder). */
async function inTmpfs(size: string, command: (dir: string) => string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'trqat-tmpfs-'));
  const result = await execa('unshare', ['-rm', 'sh', '-c', MOUNT, 'sh', size, dir, ...command(dir)], { reject: false, cwd: PACKAGE_ROOT });
  return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** Why a tmpfs cannot be mounted here (no unprivileged user namespaces, no unshare), or null. */
async function tmpfsUnavailable(): Promise<string | null> {
  const dir = mkdtempSync(join(tmpdir(), 'trqat-tmpfs-'));
  mkdirSync(join(dir, 'x'));
  const probe = await execa('unshare', ['-rm', 'sh', '-c', MOUNT, 'sh', '64k', join(dir, 'x'), 'true'], { reject: false }).catch((error: Error) => ({ exitCode: 1, stderr: error.message }));
  return probe.exitCode === 0 ? null : `cannot mount a tmpfs in a user+mount namespace here (${String(probe.stderr).trim() || 'unshare -rm failed'})`;
}

const unavailable = await tmpfsUnavailable();
if (unavailable) console.warn(`skipping the disk-full tests: ${unavailable}`);

const ENOSPC = /: no space left on device \(ENOSPC\)/i;
const EVERY = 4; // train.checkpoint_every
const STEPS = 16; // a run that commits a later checkpoint than step 4 before the disk fills still has one to fail
/** A checkpoint's folder name, written out here rather than taken from the controller. */
const folder = (step: number) => `step-${String(step).padStart(7, '0')}`;
const TINY = [
  'data.name=synthetic',
  'data.synthetic.train_size=128',
  'data.synthetic.test_size=64',
  'data.synthetic.image_size=12',
  'data.batch_size=32',
  `train.steps=${STEPS}`,
  'train.eval_every=0',
  `train.checkpoint_every=${EVERY}`,
  'train.log_every=1',
  'worker.device=cpu',
  'worker.threads=1',
  'worker.max_restarts=0',
  'dashboard.enabled=false',
];

interface DiskFullRun {
  train: { code: number; stderr: string; seconds: number | null };
  runs: string[];
  /** The step of the checkpoint committed when the disk was filled (4 unless the machine was slow to look). */
  filledAfter?: number;
  /** The last checkpoint committed when the run stopped: filledAfter, or the next one if its worker.pt was written before the fill landed. */
  committed?: number;
  workerAlive?: boolean;
  leftovers?: string[];
  runJson?: { status: string; error?: string; checkpoint_step: number } | null;
  checkpoints?: string[];
  resume?: { code: number; stdout: string; stderr: string };
  steps?: number[];
  finalStatus?: string;
}

async function diskFullRun(scenario: 'start' | 'midrun' | 'checkpoint'): Promise<DiskFullRun> {
  const result = await inTmpfs('16m', (dir) => ['node', 'test/support/fixtures/disk-full-run.mjs', dir, scenario, ...TINY]);
  expect(result.exitCode, result.stderr).toBe(0);
  return JSON.parse(result.stdout.trim().split('\n').at(-1)!) as DiskFullRun;
}

/** The common ending: both processes gone, nothing half-written left, and the checkpoint committed before the disk filled resumes to the end. */
function expectResumable(run: DiskFullRun): void {
  expect(run.train.code).toBe(1);
  expect(run.train.stderr).not.toMatch(/\n\s+at |Traceback/); // no stack, no traceback
  expect(run.train.seconds).toBeLessThan(15); // it stopped, it did not go on
  expect(run.workerAlive).toBe(false);
  expect(run.leftovers).toEqual([]);
  const last = run.committed!;
  expect(last).toBeGreaterThanOrEqual(run.filledAfter!);
  expect(last).toBeLessThan(STEPS); // the run did stop before its end
  expect(run.checkpoints).toEqual(['latest.json', ...Array.from({ length: last / EVERY }, (_, i) => folder(EVERY * (i + 1)))]);
  expect(run.resume!.code, run.resume!.stderr).toBe(0);
  expect(run.resume!.stdout).toMatch(new RegExp(`resuming at step ${last}\\b`));
  expect(run.steps).toEqual(Array.from({ length: STEPS }, (_, t) => t));
  expect(run.finalStatus).toBe('completed');
}

describe.skipIf(unavailable !== null)('a full disk', () => {
  it('at every write site of the controller: an error that names the file and the cause, the old content kept, no temporary left', async () => {
    const result = await inTmpfs('512k', (dir) => ['node', 'test/support/fixtures/write-sites.mjs', dir]);
    expect(result.exitCode, result.stderr).toBe(0);
    const sites = JSON.parse(result.stdout) as Record<string, { error: { name: string; message: string } | null; [key: string]: unknown }> & { leftovers: string[] };
    const files: Record<string, string> = {
      lock: 'run.lock',
      config: 'config.json',
      run: 'run.json',
      metrics: 'metrics.jsonl',
      end: 'run.json',
      commit: 'checkpoints/step-0000008.partial/controller.json',
      auth: 'auth.json',
      report: 'report.html',
      log: 'worker.log',
    };
    for (const [site, file] of Object.entries(files)) {
      expect(sites[site]!.error?.name, site).toBe('WriteError');
      expect(sites[site]!.error?.message, site).toMatch(new RegExp(`^cannot write \\S+/run/${file.replace(/\./g, '\\.')}${ENOSPC.source}`, 'i'));
    }
    expect(sites['lock']!['exists']).toBe(false);
    expect(sites['run']!['unchanged']).toBe(true);
    expect(sites['metrics']!['lines']).toEqual([0]); // the batch that failed is cut back: whole lines only
    expect(sites['metrics']!['text']).toBe(true);
    expect(sites['commit']!['latest']).toMatchObject({ step: 4 }); // still the latest, and verified
    expect(sites['commit']!['folders']).toEqual(['latest.json', 'step-0000004']);
    expect(sites['auth']!['exists']).toBe(false);
    expect(sites['report']!['exists']).toBe(false);
    expect(sites['log']!['tail']).toBe(true); // the stderr tail still works for error messages
    expect(sites.leftovers).toEqual([]);
  });

  it('before the run starts: exit 1 naming the file, and no run folder left behind', async () => {
    const run = await diskFullRun('start');
    expect(run.train.code).toBe(1);
    expect(run.train.stderr).toMatch(new RegExp(`^trqat: cannot write \\S+/run\\.lock${ENOSPC.source}\\n$`, 'i'));
    expect(run.runs).toEqual([]);
  });

  it('during training: the controller and the worker stop at once; freed, trqat resume finishes from the last checkpoint', async () => {
    const run = await diskFullRun('midrun');
    // Whichever write comes first fails: the controller's metrics or run.json, the worker's log, or
    // any part of the next checkpoint (at ~20 ms a step, the fill can land while it is being written).
    expect(run.train.stderr).toMatch(new RegExp(`^trqat: .*cannot write \\S+/(run\\.json|metrics\\.jsonl|worker\\.log|worker\\.pt|controller\\.json|latest\\.json)${ENOSPC.source}`, 'im'));
    expectResumable(run);
    // run.json could not be written either: resume says so
    if (run.runJson?.status === 'running') expect(run.resume!.stderr).toMatch(/run\.json still says "running"/);
  });

  it("during a checkpoint: the worker's worker.pt fails with its path and cause, run.json says failed, the previous checkpoint resumes", async () => {
    const run = await diskFullRun('checkpoint');
    const next = run.committed! + EVERY;
    expect(run.train.stderr).toMatch(new RegExp(`^trqat: rank 0 reported an error while .*saving the checkpoint of step ${next}: cannot write \\S+/${folder(next)}\\.partial/worker\\.pt${ENOSPC.source}`, 'i'));
    expect(run.runJson).toMatchObject({ status: 'failed', checkpoint_step: run.committed });
    expect(run.runJson!.error).toMatch(/worker\.pt: No space left on device/);
    expectResumable(run);
  });
});
