import { describeExit } from '../bridge/launcher.js';
import { RunFailure } from './ending.js';
import type { RunPolicy } from './policy.js';

/** After a stop, how long scripts get to say bye before the run is closed anyway. */
export const DEFAULT_STOP_GRACE_MS = 30_000;

/** trqat run and trqat serve: a user's script drives the steps; its command's exit decides the end if no bye did. */
export const clientPolicy: RunPolicy = {
  kind: 'client',
  role: 'client',
  wrongRole: 'this controller (trqat run / trqat serve) serves client sessions (trqat.client.Client); managed workers are started by "trqat train"',
  expectedWorldSize: () => null,
  writesAuthFile: () => true,
  startupTimeoutMs: () => null,
  length(config, body) {
    if (body.layers.length === 0) return { refuse: 'the model has no quantized layers: quantize it first (trqat.quantize)' };
    const configured = config.train.steps;
    const total = configured ?? body.total_steps ?? null;
    if (total === null) {
      return {
        refuse:
          'the run length is unknown: set train.steps in the config (e.g. --set train.steps=N), or pass total_steps=N ' +
          '(or steps_per_epoch=N, for train.epochs epochs) to trqat.client.Client',
      };
    }
    const warnings = configured !== null && body.total_steps != null && body.total_steps !== configured ? [`the client asked for ${body.total_steps} steps; the config's train.steps = ${configured} wins`] : [];
    return { total, evalEvery: 0, checkpointEvery: 0, warnings };
  },
  adoptsModelBits: true,
  directives: false,
  stopGraceMs: (requested) => requested ?? DEFAULT_STOP_GRACE_MS,
  restartable: () => false,
  errorsFail: false,
  processesAreRanks: false,
  exited(run, _process, exit) {
    const interrupted = exit.signal === 'SIGINT' || exit.code === 130;
    const failed = (exit.code !== 0 || exit.signal !== null) && !interrupted;
    if (failed) {
      run.fail(new RunFailure(`the training script ${describeExit(exit)}${run.position()}${run.clientError ? ` (${run.clientError})` : ''}`));
    } else if (run.allExited()) {
      if (!run.planned) run.fail(new RunFailure('the command exited (code 0) without a trqat client connecting: nothing was recorded (add trqat.client.Client to the training loop)'));
      else run.finish();
    }
  },
};
