import { totalSteps } from '../config/resolve.js';
import { describeExit } from '../bridge/launcher.js';
import type { RunPolicy } from './policy.js';

/** trqat train and resume: trqat's own worker ranks, their plan, directives and restarts. */
export const managedPolicy: RunPolicy = {
  kind: 'managed',
  role: 'worker',
  wrongRole: 'this endpoint runs a managed training (trqat train) with its own workers; connect your script to "trqat run" or "trqat serve"',
  expectedWorldSize: (config) => (config.worker.launch === 'local' ? config.worker.nproc_per_node : null),
  writesAuthFile: (config) => config.worker.launch === 'external',
  startupTimeoutMs: (config) => config.worker.startup_timeout_ms,
  length(config, body) {
    const evalEvery = config.train.eval_every ?? body.steps_per_epoch;
    return { total: totalSteps(config, body.steps_per_epoch), evalEvery, checkpointEvery: config.train.checkpoint_every ?? evalEvery, warnings: [] };
  },
  adoptsModelBits: false,
  directives: true,
  stopGraceMs: () => null,
  restartable: (launchesRanks) => launchesRanks,
  errorsFail: true,
  processesAreRanks: true,
  exited(run, process, exit) {
    const rank = process.rank;
    if (run.hasSaidBye(rank)) return;
    const hint = exit.spawnError ? ' (set worker.python or TRQAT_PYTHON to a Python with trqat installed, or run "bash scripts/setup.sh")' : '';
    const failure = run.rankFailure(`rank ${rank} ${describeExit(exit)}${hint}`, process);
    if (exit.spawnError) run.fail(failure);
    else run.rankCrashed(rank, exit.signal !== null, failure);
  },
};
