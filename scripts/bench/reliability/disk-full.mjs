// Reliability campaign, scenario 7: the disk filled mid-run (a tmpfs in a user+mount namespace,
// `unshare -rm`, as test/e2e/disk-full.test.ts does): exit 1 naming the file, the previous checkpoint
// intact; freed, resume finishes. The campaign runs the trial inside the namespace by starting
// reliability.mjs again there (--replay 7:<seed> --disk-full-in <tmpfs>) and takes its findings back.
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { fill } from '../full-disk.mjs';
import { readJson, run } from '../lib.mjs';
import { failedClearly, latestCheckpoint, resumeEqualsReference, stepIn } from './checks.mjs';
import { budget, dir, errorLine, goneWithin, reached, setRuns, STEPS, trainCli, workerPid } from './harness.mjs';

const SELF = join(import.meta.dirname, '..', 'reliability.mjs');

export const DISK_FULL = {
  n: 7,
  id: 'disk-full',
  title: 'disk full mid-run (tmpfs), then freed',
  latency: 'disk full → CLI exit',
  draw: () => fc.record({ step: stepIn(5, STEPS - 5), leave: fc.constantFrom(0, 256 * 1024) }),
  trial: diskFullTrial,
};

// scenario 7: inside a user+mount namespace with a small tmpfs, as test/e2e/disk-full.test.ts does

const MOUNT = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"';

/** Why a tmpfs cannot be mounted here (no unprivileged user namespaces, no unshare), or null. */
export async function tmpfsUnavailable() {
  const probe = mkdtempSync(join(tmpdir(), 'trqat-tmpfs-'));
  const result = await run('unshare', ['-rm', 'sh', '-c', MOUNT, 'sh', '64k', probe, 'true'], { allowFail: true }).catch((error) => ({ code: 1, stderr: error.message }));
  rmSync(probe, { recursive: true, force: true });
  return result.code === 0 ? null : `cannot mount a tmpfs in a user+mount namespace here (${result.stderr.trim() || 'unshare -rm failed'})`;
}

/** Outside the namespace: starts this script inside one for the trial, and takes its findings back. */
async function diskFullTrial(f, _plan, _name, _refDir, seed) {
  const mount = mkdtempSync(join(tmpdir(), 'trqat-tmpfs-'));
  const args = ['--budget', budget, '--out', join(dir, '..'), '--replay', `7:${seed}`, '--disk-full-in', mount];
  const result = await run('unshare', ['-rm', 'sh', '-c', MOUNT, 'sh', '32m', mount, process.execPath, SELF, ...args], { allowFail: true });
  rmSync(mount, { recursive: true, force: true });
  const last = result.stdout.trim().split('\n').pop();
  let inner = null;
  try {
    inner = JSON.parse(last);
  } catch {
    f.check(false, `harness: the trial in the namespace printed no record (exit ${result.code}): ${errorLine(result.stderr)}`);
    return null;
  }
  Object.assign(f.fault, inner.fault);
  f.latency_ms.push(...inner.latency_ms);
  f.reasons.push(...inner.reasons);
  return null; // the run folder was on the tmpfs: gone with the namespace
}

/** Inside the namespace: fills the tmpfs at `mount` once step `step` is done, leaving `leave` bytes. */
export async function diskFullInside(f, { step, leave }, name, refDir, mount) {
  setRuns(join(mount, 'runs'));
  const cli = trainCli(name);
  // A committed checkpoint to fall back on, and the step drawn: then the disk fills.
  if (!(await reached(f, cli, (done) => done >= step && existsSync(join(cli.runDir, 'checkpoints', 'latest.json')), `step ${step}`))) return null;
  const runDir = cli.runDir;
  const before = readJson(join(runDir, 'checkpoints', 'latest.json')).step;
  const pid = workerPid(runDir);
  const filler = join(mount, 'filler');
  fill(filler, leave);
  const at = Date.now();
  const ended = await cli.ended;
  f.latency_ms.push(ended.at - at);
  failedClearly(f, ended, /cannot write \S+: no space left on device/i);
  f.fault.file = /cannot write (\S+): /.exec(f.fault.error)?.[1]?.replace(mount, '<tmpfs>') ?? null; // the file the error names
  f.check((await goneWithin(pid, 2000)) !== null, `the worker (pid ${pid}) was left running`);
  const { latest, warnings } = latestCheckpoint(runDir);
  f.fault.latest = latest?.step ?? null;
  f.check(warnings.length === 0 && latest !== null && latest.step >= before, `the previous checkpoint (step ${before}) is not intact: latest ${latest?.step ?? 'none'}${warnings.length ? `: ${warnings.join('; ')}` : ''}`);
  rmSync(filler, { force: true });
  await resumeEqualsReference(f, runDir, refDir);
  return null;
}

