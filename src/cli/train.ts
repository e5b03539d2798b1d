import { stringify as toYaml } from 'yaml';
import { applyOverrides, loadConfig, parseConfig } from '../config/load.js';
import { resolveConfig, type ResolvedConfig } from '../config/resolve.js';
import { isResumable, RESUMABLE_PREFIXES } from '../config/resume.js';
import { TrqatError } from '../errors.js';
import type { RunEvent } from '../run/record.js';
import type { RunHandle, RunOptions } from '../run/run.js';
import { startResume, startTraining } from '../entry/train.js';
import { eventFormatter, formatSummary, ProgressPrinter } from './progress.js';
import { stopOnSignals } from './signals.js';

export async function trainCommand(configPath: string | null, overrides: string[]): Promise<number> {
  const config = loadConfig(configPath, overrides);
  return follow((options) => startTraining(config, options));
}

export async function resumeCommand(runDir: string, overrides: string[], allowChangedPlugins = false): Promise<number> {
  for (const override of overrides) {
    if (!isResumable(override.slice(0, Math.max(0, override.indexOf('='))))) {
      throw new TrqatError(`--set ${override}: a resume can only change ${RESUMABLE_PREFIXES.join(', ')} (anything else would change the schedule)`, 2);
    }
  }
  const withOverrides = (saved: ResolvedConfig): ResolvedConfig =>
    overrides.length === 0 ? saved : resolveConfig(parseConfig(applyOverrides(saved, overrides), 'resumed config'));
  return follow((options) => startResume(runDir, { ...options, overrides: withOverrides, allowChangedPlugins }));
}

export async function configCommand(configPath: string | null, overrides: string[]): Promise<number> {
  process.stdout.write(toYaml(loadConfig(configPath, overrides)));
  return 0;
}

/** Runs a managed run with progress lines and the two-stage Ctrl-C; returns the exit status. */
async function follow(start: (options: RunOptions) => Promise<RunHandle>): Promise<number> {
  let handle: RunHandle | null = null;
  const stop = stopOnSignals(
    {
      first: 'stopping after this step and writing a checkpoint (Ctrl-C again to stop at once)',
      second: 'stopping at once; the last checkpoint is kept',
    },
    () => handle?.stopNow('stopped at once (a second Ctrl-C); resume continues from the last checkpoint'),
  );
  let logEvery = 1; // the run's train.log_every arrives with its "started" event
  const printer = new ProgressPrinter(process.stdout, process.stderr, eventFormatter(logEvery));
  const onEvent = (event: RunEvent) => {
    if (event.type === 'started') logEvery = event.logEvery;
    if (event.type === 'listening' && event.authFile) console.log(externalLaunch(event.endpoint, event.authFile));
    printer.print(event);
  };
  try {
    handle = await start({ signal: stop.signal, onEvent });
    const summary = await handle.done;
    console.log(formatSummary(summary, true));
    return summary.status === 'completed' ? 0 : 130;
  } finally {
    stop.release();
  }
}

/** How to start the ranks of a run with worker.launch=external (README, "ImageNet on many GPUs"). */
function externalLaunch(endpoint: string, authFile: string): string {
  return [
    `waiting for the ranks on ${endpoint}; start them on every node with the run's auth file (owner-only, keep it so):`,
    `  TRQAT_AUTH_FILE=${authFile} torchrun --nnodes N --nproc_per_node G --rdzv_backend c10d --rdzv_endpoint HOST:29400 -m trqat.worker`,
    `  or under SLURM: TRQAT_AUTH_FILE=${authFile} srun python -m trqat.worker   (RANK, WORLD_SIZE, LOCAL_RANK from SLURM_*)`,
  ].join('\n');
}
