// Reliability campaign: what a trial checks. The uninterrupted reference run of a config, what
// "equal to it" means, and the checks the scenarios share.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { importDist, readJson, writeJson } from '../lib.mjs';
import * as h from './harness.mjs';

const { MetricsLog } = await importDist();
const { Checkpoints } = await importDist('run/checkpoints.js');

/** What one trial found: a reason for each check that did not hold, latencies in ms, what the fault did. */
export class Findings {
  reasons = [];
  latency_ms = [];
  fault = {};
  check(ok, reason) {
    if (!ok) this.reasons.push(reason);
    return ok;
  }
}

/** The uninterrupted run of the config with `extra` settings (run once; its folder is remembered in the out folder). */
export async function reference(extra = []) {
  const key = extra.length === 0 ? h.CONFIG_KEY : `${h.CONFIG_KEY}-${createHash('sha256').update(JSON.stringify(extra)).digest('hex').slice(0, 6)}`;
  const pointer = join(h.dir, `reference-${key}.json`);
  if (existsSync(pointer)) {
    const { runDir } = readJson(pointer);
    if (existsSync(join(runDir, 'run.json')) && h.runInfo(runDir).status === 'completed') return runDir;
  }
  process.stderr.write(`reliability: the reference run (${h.STEPS} steps${extra.length ? `, ${extra.join(' ')}` : ''})\n`);
  const cli = h.startCli(['train', ...h.sets([...h.BASE, ...extra, `out_dir=${join(h.dir, 'reference')}`, `name=reference-${key}`])], `reference-${key}`);
  const ended = await cli.ended;
  if (ended.code !== 0) throw new Error(`the reference run failed (exit ${ended.code}):\n${ended.stderr}`);
  writeJson(pointer, { runDir: cli.runDir, settings: [...h.BASE, ...extra] });
  return cli.runDir;
}

/** A metrics record without its clock fields. */
const numbers = ({ time: _t, steps_per_s: _s, seconds: _e, ...rest }) => rest;

/** null when the run's step and evaluation records equal the reference's, else the first difference. */
export function difference(runDir, refDir) {
  const read = (d) => MetricsLog.read(join(d, 'metrics.jsonl')).map(numbers);
  const [got, want] = [read(runDir), read(refDir)];
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    const [a, b] = [got[i], want[i]];
    if (!a || !b) return `the metrics log has ${got.length} records, the reference ${want.length} (first missing: ${JSON.stringify(a ?? b).slice(0, 80)})`;
    if (JSON.stringify(a) === JSON.stringify(b)) continue;
    const fields = Object.keys({ ...a, ...b }).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
    const show = (r) => fields.slice(0, 3).map((k) => `${k}=${JSON.stringify(r[k])?.slice(0, 40)}`).join(', ');
    return `${a.type} record ${i} (step ${a.step}) differs: ${show(a)}; the reference has ${show(b)}`;
  }
  const status = h.runInfo(runDir).status;
  return status === 'completed' ? null : `run.json says "${status}" after the resume`;
}

/** The common ending: `trqat resume` finishes and the run equals the reference. */
export async function resumeEqualsReference(f, runDir, refDir, expectStderr = null) {
  const resumed = await h.resumeCli(runDir);
  if (!f.check(resumed.code === 0, `resume exited ${resumed.code}: ${h.errorLine(resumed.stderr).slice(0, 200)}`)) return resumed;
  if (expectStderr) f.check(expectStderr.test(resumed.stderr), `resume did not say ${expectStderr} (stderr: ${resumed.stderr.trim().split('\n')[0]?.slice(0, 160) || 'empty'})`);
  const diff = difference(runDir, refDir);
  f.check(diff === null, `not equal to the reference: ${diff}`);
  const partials = readdirSync(join(runDir, 'checkpoints')).filter((name) => name.endsWith('.partial'));
  f.check(partials.length === 0, `left behind after the resume: ${partials.join(', ')}`);
  return resumed;
}

/** A run the fault stopped (worker.max_restarts=0): exit 1, an error matching `error`, no stack trace. */
export function failedClearly(f, ended, error) {
  f.fault.error = h.errorLine(ended.stderr).slice(0, 240);
  f.check(ended.code === 1, `the CLI exited ${ended.code}${ended.signal ? ` (${ended.signal})` : ''}, not 1`);
  f.check(error.test(ended.stderr), `no clear error matching ${error}: "${f.fault.error}"`);
  f.check(!h.stackTrace(ended.stderr), 'a stack trace on the console');
}

/** The run's newest checkpoint the controller would resume from, and the warnings reading it gave (an error is one). */
export function latestCheckpoint(runDir) {
  const warnings = [];
  let latest = null;
  try {
    latest = new Checkpoints(runDir, 3).latest((w) => warnings.push(w));
  } catch (error) {
    warnings.push(error.message);
  }
  return { latest, warnings };
}

export const stepIn = (lo, hi) => fc.integer({ min: lo, max: hi });

/**
 * Starts a run and sends `signal` to its worker once step `step` is done; the run must then fail
 * clearly (`error`). The latency is from the signal to the CLI's exit. pid is null when the run
 * never reached the step (the trial has failed already).
 */
export async function signalWorkerAt(f, name, step, signal, error) {
  const cli = h.trainCli(name);
  if (!(await h.reached(f, cli, (done) => done === step, `step ${step}`))) return { cli, pid: null, noticedMs: null };
  const pid = h.workerPid(cli.runDir);
  const at = Date.now();
  process.kill(pid, signal);
  const ended = await cli.ended;
  f.latency_ms.push(ended.at - at);
  failedClearly(f, ended, error);
  return { cli, pid, noticedMs: ended.at - at };
}
