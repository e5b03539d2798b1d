// Reliability campaign, scenarios 1-4: faults of the worker (a managed run's one rank).
//   1 worker-kill        the worker SIGKILLed at a random step (worker.max_restarts=0): a clear error;
//                        `trqat resume` finishes
//   2 checkpoint-kill    the worker SIGKILLed while a checkpoint is written (its .partial folder
//                        appears, its temporary worker.pt appears, or worker.pt is in place): the latest
//                        checkpoint is intact; resume finishes
//   3 auto-restart       the worker SIGKILLed twice (worker.max_restarts=2): the run completes by itself
//   4 worker-hang        the worker SIGSTOPped: noticed within worker.heartbeat_timeout_ms, nothing left
//                        running; resume finishes
import { existsSync, readdirSync, watch } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { difference, failedClearly, resumeEqualsReference, latestCheckpoint, signalWorkerAt, stepIn } from './checks.mjs';
import { errorLine, goneWithin, HEARTBEAT_TIMEOUT_MS, reached, runInfo, seconds, STEPS, trainCli, workerPid } from './harness.mjs';


export const WORKER_FAULTS = [
  {
    n: 1,
    id: 'worker-kill',
    title: 'worker SIGKILL at a random step',
    latency: 'kill → CLI exit',
    draw: () => fc.record({ step: stepIn(5, STEPS - 5) }),
    async trial(f, { step }, name, refDir) {
      const { cli, pid } = await signalWorkerAt(f, name, step, 'SIGKILL', /rank 0 was killed by SIGKILL/);
      if (pid === null) return cli.runDir;
      f.check(runInfo(cli.runDir).status === 'failed', `run.json says "${runInfo(cli.runDir).status}", not "failed"`);
      await resumeEqualsReference(f, cli.runDir, refDir);
      return cli.runDir;
    },
  },
  {
    n: 2,
    id: 'checkpoint-kill',
    title: 'worker SIGKILL during a checkpoint write',
    latency: 'kill → CLI exit',
    draw: () => fc.record({ checkpoint: stepIn(2, Math.floor((STEPS - 8) / 4)).map((i) => 4 * i), moment: fc.constantFrom('folder', 'temporary', 'worker.pt') }),
    async trial(f, { checkpoint, moment }, name, refDir) {
      const cli = trainCli(name);
      // The checkpoint before the target is committed by then: its folder exists to watch.
      if (!(await reached(f, cli, (done) => done === checkpoint - 3, `step ${checkpoint - 3}`))) return cli.runDir;
      const runDir = cli.runDir;
      const partial = join(runDir, 'checkpoints', `step-${String(checkpoint).padStart(7, '0')}.partial`);
      const killedAt = await killWhenCheckpointing(partial, moment, workerPid(runDir), cli);
      if (!killedAt) {
        await cli.ended;
        return f.check(false, `the run ended before the checkpoint of step ${checkpoint} was written`), runDir;
      }
      f.fault.partial_held = existsSync(partial) ? readdirSync(partial).sort() : null; // null: the commit came first
      const ended = await cli.ended;
      f.latency_ms.push(ended.at - killedAt);
      failedClearly(f, ended, /rank 0 was killed by SIGKILL/);
      const { latest, warnings } = latestCheckpoint(runDir);
      f.fault.latest = latest?.step ?? null;
      // The previous checkpoint, or this one when its commit came before the kill: intact either way.
      const expected = [checkpoint - 4, checkpoint];
      f.check(warnings.length === 0 && expected.includes(latest?.step), `the latest checkpoint is ${latest?.step ?? 'none'}, expected step ${expected.join(' or ')}, intact${warnings.length ? `: ${warnings.join('; ')}` : ''}`);
      await resumeEqualsReference(f, runDir, refDir);
      return runDir;
    },
  },
  {
    n: 3,
    id: 'auto-restart',
    title: 'worker SIGKILL twice, worker.max_restarts=2',
    latency: 'kill → first step of the restarted worker',
    draw: () =>
      stepIn(5, STEPS - 14).chain((first) => fc.record({ first: fc.constant(first), second: stepIn(first - (first % 4) + 1, STEPS - 5) })),
    async trial(f, { first, second }, name, refDir) {
      const cli = trainCli(name, ['worker.max_restarts=2']);
      const pids = [];
      for (const step of [first, second]) {
        const previous = pids.at(-1);
        // After a restart the worker is another process; the replayed steps count from its checkpoint.
        if (!(await reached(f, cli, (done) => done >= step && workerPid(cli.runDir) !== previous, `the kill at step ${step}`))) return cli.runDir;
        const pid = workerPid(cli.runDir);
        pids.push(pid);
        const at = Date.now();
        process.kill(pid, 'SIGKILL');
        const back = await cli.whenStep(() => workerPid(cli.runDir) !== pid);
        if (back) f.latency_ms.push(back - at);
      }
      const ended = await cli.ended;
      f.check(ended.code === 0, `the CLI exited ${ended.code}: ${errorLine(ended.stderr)}`);
      const restarts = ended.stderr.match(/restarting every rank from the checkpoint of step \d+/g) ?? [];
      f.check(restarts.length === 2, `${restarts.length} restart warnings, not 2`);
      f.check(f.latency_ms.length === 2, 'the run did not train again after each kill');
      const diff = difference(cli.runDir, refDir);
      f.check(diff === null, `not equal to the reference: ${diff}`);
      return cli.runDir;
    },
  },
  {
    n: 4,
    id: 'worker-hang',
    title: 'worker SIGSTOP (hung)',
    latency: 'SIGSTOP → CLI exit (heartbeat timeout 3 s)',
    draw: () => fc.record({ step: stepIn(5, STEPS - 5) }),
    async trial(f, { step }, name, refDir) {
      const { cli, pid, noticedMs } = await signalWorkerAt(f, name, step, 'SIGSTOP', /rank 0 \(pid \d+ on .+\) stopped answering/);
      if (pid === null) return cli.runDir;
      f.check(noticedMs < HEARTBEAT_TIMEOUT_MS + 2000, `noticed after ${seconds(noticedMs)}, the timeout is ${seconds(HEARTBEAT_TIMEOUT_MS)}`);
      if (!f.check((await goneWithin(pid, 2000)) !== null, `the stopped worker (pid ${pid}) was left running after the CLI exited`)) process.kill(pid, 'SIGKILL');
      await resumeEqualsReference(f, cli.runDir, refDir);
      return cli.runDir;
    },
  },
];


/**
 * SIGKILLs the worker at a moment of the checkpoint written into `partial`: its folder appears
 * ('folder'), the worker's temporary file appears in it ('temporary'), or worker.pt is renamed into
 * place ('worker.pt'). Watched with inotify (fs.watch), so the kill comes within a millisecond or so
 * of the event. Resolves with the time of the kill, or null when the run ends first.
 */
function killWhenCheckpointing(partial, moment, pid, cli) {
  const wanted = (name) => (moment === 'temporary' ? name?.startsWith('.worker.pt.') : name === 'worker.pt');
  return new Promise((resolve) => {
    const watchers = [];
    let settled = false;
    const settle = (at) => {
      if (settled) return;
      settled = true;
      for (const w of watchers) w.close();
      resolve(at);
    };
    const kill = () => {
      if (settled) return;
      const at = Date.now();
      process.kill(pid, 'SIGKILL');
      settle(at);
    };
    const watchInside = () => {
      if (settled || watchers.length > 1) return;
      try {
        watchers.push(watch(partial, (_, name) => wanted(name) && kill()));
        // What was written before the watch began counts too (the record says what the folder held).
        if (readdirSync(partial).some((name) => wanted(name) || name === 'worker.pt')) kill();
      } catch {
        kill(); // the folder is gone already (committed): as late as it gets
      }
    };
    const name = partial.split('/').pop();
    watchers.push(watch(join(partial, '..'), (_, entry) => entry === name && existsSync(partial) && (moment === 'folder' ? kill() : watchInside())));
    void cli.ended.then(() => settle(null));
  });
}

