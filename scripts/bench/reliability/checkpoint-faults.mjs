// Reliability campaign, scenarios 6 and 10: the newest checkpoint of a run stopped by Ctrl-C damaged.
//   6 corrupt-checkpoint   its bytes flipped or cut (worker.pt or controller.json): resume warns, uses the
//                          previous one
//   10 tampered-controller its controller.json rewritten with a bad value (K "abc", U 1e308, NaN, a missing
//                          field, ...) and its sha256 in latest.json updated, as a tamperer who knows the
//                          index would: resume warns, falls back to the previous intact checkpoint,
//                          finishes equal to the reference, no Python or Node stack trace on the console
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { readJson } from '../lib.mjs';
import { resumeEqualsReference, stepIn } from './checks.mjs';
import { errorLine, reached, stackTrace, STEPS, trainCli } from './harness.mjs';

/** Trains until step `step` is done, then Ctrl-C (a checkpoint of that step); the run folder, or null (noted) when that went wrong. */
async function stoppedRun(f, name, step) {
  const cli = trainCli(name);
  if (!(await reached(f, cli, (done) => done === step, `step ${step}`))) return { runDir: cli.runDir, ok: false };
  cli.child.kill('SIGINT'); // Ctrl-C: stops after this step with a checkpoint
  const ended = await cli.ended;
  return { runDir: cli.runDir, ok: f.check(ended.code === 130, `Ctrl-C: the CLI exited ${ended.code}, not 130: ${errorLine(ended.stderr)}`) };
}

/** The ways a controller.json is tampered with: [key, the value's JSON text, or null to remove the key]. */
const TAMPERINGS = {
  'K "abc"': ['K', '"abc"'],
  'U 1e308': ['U', '1e308'],
  'K NaN': ['K', 'NaN'],
  'U NaN': ['U', 'NaN'],
  'K missing': ['K', null],
  'U missing': ['U', null],
  'U -1': ['U', '-1'],
  'K null': ['K', 'null'],
};

export const CHECKPOINT_FAULTS = [
  {
    n: 6,
    id: 'corrupt-checkpoint',
    title: 'newest checkpoint damaged after a stopped run',
    latency: null,
    draw: () =>
      fc.record({
        step: stepIn(6, STEPS - 5),
        file: fc.constantFrom('worker.pt', 'controller.json'),
        damage: fc.constantFrom('flip', 'truncate'),
        perMille: fc.integer({ min: 0, max: 999 }), // where in the file
      }),
    async trial(f, { step, file, damage, perMille }, name, refDir) {
      const cli = trainCli(name);
      if (!(await reached(f, cli, (done) => done === step, `step ${step}`))) return cli.runDir;
      cli.child.kill('SIGINT'); // Ctrl-C: stops after this step with a checkpoint
      const ended = await cli.ended;
      const runDir = cli.runDir;
      if (!f.check(ended.code === 130, `Ctrl-C: the CLI exited ${ended.code}, not 130: ${errorLine(ended.stderr)}`)) return runDir;
      const index = readJson(join(runDir, 'checkpoints', 'latest.json'));
      const fallback = index.committed.at(-2)?.step;
      const target = join(runDir, 'checkpoints', index.path, file);
      const bytes = readFileSync(target);
      const offset = Math.floor((perMille / 1000) * bytes.length);
      if (damage === 'flip') bytes[offset] ^= 0xff;
      writeFileSync(target, damage === 'flip' ? bytes : bytes.subarray(0, offset));
      Object.assign(f.fault, { newest: index.step, offset, size: bytes.length, fallback });
      const resumed = await resumeEqualsReference(f, runDir, refDir, new RegExp(`damaged.*using the checkpoint of step ${fallback} instead`));
      f.check(new RegExp(`resuming at step ${fallback}\\b`).test(resumed.stdout), `the resume did not start at step ${fallback}`);
      return runDir;
    },
  },
  {
    n: 10,
    id: 'tampered-controller',
    title: 'newest controller state tampered with (sha256 updated)',
    latency: null,
    draw: () => fc.record({ step: stepIn(6, STEPS - 5), tampering: fc.constantFrom(...Object.keys(TAMPERINGS)) }),
    async trial(f, { step, tampering }, name, refDir) {
      const { runDir, ok } = await stoppedRun(f, name, step);
      if (!ok) return runDir;
      const indexPath = join(runDir, 'checkpoints', 'latest.json');
      const index = readJson(indexPath);
      const fallback = index.committed.at(-2)?.step;
      const target = join(runDir, 'checkpoints', index.path, 'controller.json');
      const [key, value] = TAMPERINGS[tampering];
      const state = readJson(target);
      const marker = '"@@tampered@@"';
      if (value === null) delete state.controller[key];
      else state.controller[key] = JSON.parse(marker);
      writeFileSync(target, JSON.stringify(state).replace(marker, value ?? marker)); // NaN is no JSON: written as text
      const sha = createHash('sha256').update(readFileSync(target)).digest('hex');
      for (const commit of [index, ...index.committed]) if (commit.path === index.path && commit.sha256) commit.sha256['controller.json'] = sha;
      writeFileSync(indexPath, JSON.stringify(index));
      Object.assign(f.fault, { newest: index.step, fallback });
      const resumed = await resumeEqualsReference(f, runDir, refDir, new RegExp(`using the checkpoint of step ${fallback} instead`));
      f.fault.warning = resumed.stderr.split('\n').find((line) => line.startsWith('warning: '))?.slice(0, 240) ?? null;
      f.check(!stackTrace(resumed.stderr), 'a stack trace on the console of the resume');
      f.check(new RegExp(`resuming at step ${fallback}\\b`).test(resumed.stdout), `the resume did not start at step ${fallback}`);
      return runDir;
    },
  },
];
