// Reliability campaign, scenarios 5 and 8: the controller (the `trqat train` process) SIGKILLed.
//   5 controller-kill    the CLI process SIGKILLed at a random step: its worker gone within 5 s; resume
//                        warns about the stale "running" and finishes
//   8 startup-kill       the CLI process SIGKILLed at a random moment of its first 6 s (before, around
//                        or after the worker's hello): no process of the run is left after a 15 s grace
//                        (the worker watches its parent); then the run folder, if there is one, resumes
//                        to the end or is refused clearly (no checkpoint yet: exit 1 or 2, one line, no stack trace)
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { difference, resumeEqualsReference, stepIn } from './checks.mjs';
import { errorLine, goneWithin, marked, ORPHAN_LIMIT_MS, reached, resumeCli, RUNS, seconds, sleep, stackTrace, STEPS, trainCli, workerPid } from './harness.mjs';

/** How long the processes of a controller killed during start-up may take to go (a worker importing torch notices after). */
const STARTUP_GRACE_MS = 15_000;
/** Scenario 8 draws its kill within this much of the CLI's start. */
const STARTUP_KILL_WITHIN_MS = 6000;

export const CONTROLLER_FAULTS = [
  {
    n: 5,
    id: 'controller-kill',
    title: 'controller (CLI) SIGKILL at a random step',
    latency: 'kill → worker gone',
    draw: () => fc.record({ step: stepIn(5, STEPS - 5) }),
    async trial(f, { step }, name, refDir) {
      const cli = trainCli(name);
      if (!(await reached(f, cli, (done) => done === step, `step ${step}`))) return cli.runDir;
      const pid = workerPid(cli.runDir);
      cli.child.kill('SIGKILL');
      const gone = await goneWithin(pid, 3 * ORPHAN_LIMIT_MS);
      await cli.ended;
      if (gone === null) process.kill(pid, 'SIGKILL');
      else f.latency_ms.push(gone);
      f.check(gone !== null && gone < ORPHAN_LIMIT_MS, gone === null ? `the worker (pid ${pid}) still ran ${seconds(3 * ORPHAN_LIMIT_MS)} later` : `the worker took ${seconds(gone)} to go`);
      await resumeEqualsReference(f, cli.runDir, refDir, /run\.json still says "running"/);
      return cli.runDir;
    },
  },
  {
    n: 8,
    id: 'startup-kill',
    title: 'controller (CLI) SIGKILL during start-up',
    latency: 'kill → last process of the run gone',
    // Within 6 s: start-up takes ~3 s here and a 48-step run at 28x28 ~8 s; a later kill could come after the end.
    draw: () => fc.record({ delayMs: fc.integer({ min: 0, max: STARTUP_KILL_WITHIN_MS }) }),
    async trial(f, { delayMs }, name, refDir) {
      const ownFolders = () => (existsSync(RUNS) ? readdirSync(RUNS).filter((d) => d.startsWith(`${name}-`)) : []);
      const earlier = new Set(ownFolders()); // a lost trial's folder of another config or an earlier attempt is kept
      const cli = trainCli(name);
      await Promise.race([sleep(delayMs), cli.exited]);
      const stepsShown = (cli.stdout.match(/^step \d+\//gm) ?? []).length;
      const processes = marked(name).filter((p) => p.pid !== cli.child.pid);
      const worker = cli.runDir && existsSync(join(cli.runDir, 'run.json')) ? workerPid(cli.runDir) : null;
      // What the kill interrupted: the run folder printed, the worker started, its hello recorded, steps shown.
      Object.assign(f.fault, { run_folder: cli.runDir !== null, worker_started: processes.length > 0, hello: worker !== null, steps_shown: stepsShown });
      if (!f.check(cli.child.exitCode === null, `the CLI ended by itself within ${seconds(delayMs)} (exit ${cli.child.exitCode})`)) return cli.runDir;
      const at = Date.now();
      cli.child.kill('SIGKILL');
      await cli.exited;
      let left = marked(name);
      while (left.length > 0 && Date.now() - at < STARTUP_GRACE_MS) {
        await sleep(50);
        left = marked(name);
      }
      if (left.length === 0) f.latency_ms.push(Date.now() - at);
      for (const p of left) process.kill(p.pid, 'SIGKILL');
      const orphans = left.map((p) => `pid ${p.pid} ${p.command.slice(-40)}`).join(', ');
      f.check(left.length === 0, `still running ${seconds(STARTUP_GRACE_MS)} after the kill: ${orphans}`);
      await cli.ended;
      const folders = ownFolders().filter((d) => !earlier.has(d));
      const runDir = cli.runDir ?? (folders.length === 1 ? join(RUNS, folders[0]) : null);
      f.fault.folder = runDir === null ? 'none' : 'resumed';
      if (!f.check(folders.length <= 1, `${folders.length} run folders for one run: ${folders.join(', ')}`) || runDir === null) return runDir;
      const resumed = await resumeCli(runDir);
      f.check(!stackTrace(resumed.stderr), 'a stack trace on the console of the resume');
      if (resumed.code === 0) {
        const diff = difference(runDir, refDir);
        f.check(diff === null, `not equal to the reference: ${diff}`);
      } else {
        // Nothing to resume from (no checkpoint yet): refused with a clear one-line reason.
        f.fault.folder = 'refused';
        f.fault.resume_error = errorLine(resumed.stderr).slice(0, 240);
        f.check([1, 2].includes(resumed.code) && /no checkpoint to resume from|not a run folder/.test(resumed.stderr), `resume exited ${resumed.code}: "${f.fault.resume_error}"`);
      }
      return runDir;
    },
  },
];
