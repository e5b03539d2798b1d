// Reliability campaign, scenario 9: one of two data-parallel ranks (gloo on the CPU) SIGKILLed at a
// random step (worker.max_restarts=0): the run fails clearly, naming the dead rank as the cause (not
// the one whose collective broke after it), run.json says so, no rank is left running; `trqat
// resume` finishes equal to an uninterrupted two-rank run.
import fc from 'fast-check';
import { failedClearly, reference, resumeEqualsReference, stepIn } from './checks.mjs';
import { goneWithin, reached, runInfo, STEPS, trainCli, workerPid } from './harness.mjs';

const TWO_RANKS = ['worker.nproc_per_node=2'];

export const RANK_KILL = {
  n: 9,
  id: 'rank-kill',
  title: 'one of 2 ranks SIGKILLed at a random step',
  latency: 'kill → CLI exit',
  draw: () => fc.record({ step: stepIn(5, STEPS - 5), rank: fc.constantFrom(0, 1) }),
  async trial(f, { step, rank }, name) {
    const refDir = await reference(TWO_RANKS); // two ranks: another run than one rank's (BatchNorm sees half the batch)
    const cli = trainCli(name, TWO_RANKS);
    if (!(await reached(f, cli, (done) => done === step, `step ${step}`))) return cli.runDir;
    const [pid, other] = [workerPid(cli.runDir, rank), workerPid(cli.runDir, 1 - rank)];
    const at = Date.now();
    process.kill(pid, 'SIGKILL');
    const ended = await cli.ended;
    f.latency_ms.push(ended.at - at);
    const cause = new RegExp(`rank ${rank} was killed by SIGKILL`);
    failedClearly(f, ended, cause);
    f.check(new RegExp(`^(trqat: )?rank ${rank} was killed by SIGKILL`).test(f.fault.error), `the error does not start with rank ${rank} as the cause: "${f.fault.error}"`);
    const info = runInfo(cli.runDir);
    f.check(info.status === 'failed' && cause.test(info.error ?? ''), `run.json says "${info.status}" with error "${(info.error ?? '').slice(0, 120)}", not rank ${rank} killed by SIGKILL`);
    if (!f.check((await goneWithin(other, 5000)) !== null, `rank ${1 - rank} (pid ${other}) was left running`)) process.kill(other, 'SIGKILL');
    await resumeEqualsReference(f, cli.runDir, refDir);
    return cli.runDir;
  },
};
