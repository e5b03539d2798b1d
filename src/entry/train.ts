import { existsSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import type { ResolvedConfig } from '../config/resolve.js';
import { ConfigError, TrqatError } from '../errors.js';
import { parseConfig } from '../config/load.js';
import { configSchema } from '../config/schema.js';
import { resolveConfig } from '../config/resolve.js';
import { scheduleChanges } from '../config/resume.js';
import { freePort, rankEnv, RunProcess, workerCommand, workerEnv } from '../bridge/launcher.js';
import { withRunViews } from '../dashboard/live.js';
import { Checkpoints, type CheckpointRef } from '../run/checkpoints.js';
import { createRunDir, readJson } from '../files.js';
import { CONFIG_FILE, notARunFolder, RUN_FILE, type RunInfo, type RunSummary } from '../run/record.js';
import { Run, type RunHandle, type RunLauncher, type RunOptions } from '../run/run.js';
import { logName } from '../run/supervisor.js';
import { identities, loadPlugins, pluginChanges, type PluginOptions, type Plugins } from '../schedules/plugin.js';

/** A run's options: events and stopping, and the controller's plug-ins (README, "Scheduling as code"). */
export type TrainOptions = RunOptions & PluginOptions;

/** Creates a new run folder under `config.out_dir` and trains it to the end. */
export async function train(config: ResolvedConfig, options: TrainOptions = {}): Promise<RunSummary> {
  return (await startTraining(config, options)).done;
}

/** Like `train`, but returns as soon as the run listens: the handle stops it and tells where it is. */
export async function startTraining(config: ResolvedConfig, options: TrainOptions = {}): Promise<RunHandle> {
  const plugins = await loadPlugins(config, options); // a module that cannot be loaded: before the run folder exists
  return launch(createRunDir(config), config, null, options, plugins);
}

/**
 * `overrides` may change settings that do not touch the schedule (the CLI allows worker.* and a few more).
 * `allowChangedPlugins`: continue although a plug-in module's file changed since the checkpoint.
 */
export type ResumeOptions = TrainOptions & { overrides?: (config: ResolvedConfig) => ResolvedConfig; allowChangedPlugins?: boolean };

/** Continues a run from its latest checkpoint, with the schedules exactly where they stopped. */
export async function resume(runDir: string, options: ResumeOptions = {}): Promise<RunSummary> {
  return (await startResume(runDir, options)).done;
}

export async function startResume(runDir: string, options: ResumeOptions = {}): Promise<RunHandle> {
  const dir = resolvePath(runDir);
  if (!existsSync(dir)) throw notARunFolder(dir, 'it does not exist');
  const missing = [CONFIG_FILE, RUN_FILE].filter((file) => !existsSync(join(dir, file)));
  if (missing.length > 0) throw notARunFolder(dir, `${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing`);
  const info = readJson<RunInfo>(join(dir, RUN_FILE), 'run status');
  if (info.kind === 'client') throw new TrqatError(`${dir} is a client run (trqat run / trqat serve): resume your script from its own checkpoint with client.state_dict()`);
  if (info.status === 'completed') throw new TrqatError(`${dir} has already completed (${info.checkpoint_step} of ${info.plan?.total_steps} steps)`);
  const warn = (message: string) => options.onEvent?.({ type: 'warning', message });
  const checkpoint = new Checkpoints(dir, 1).latest(warn); // a damaged latest one: the newest intact one, said
  if (!checkpoint) throw new TrqatError(`${dir} has no checkpoint to resume from; start the run again with "trqat train"`);
  const checkpointed = Checkpoints.readController(checkpoint);
  const recorded = checkpointed.config;
  // The stored config is checked like a new one: a hand-edited or damaged file is a config error.
  const stored = rebuildSections(readJson<unknown>(join(dir, CONFIG_FILE), 'run config'), recorded, checkpoint.step, warn);
  const saved = resolveConfig(parseConfig(stored, join(dir, CONFIG_FILE)));
  const config = options.overrides ? options.overrides(saved) : saved;
  const changes = recorded ? scheduleChanges(recorded, config) : [];
  if (changes.length > 0) {
    throw new ConfigError(
      `the config of ${dir} differs from the one its checkpoint of step ${checkpoint.step} was trained with: ${changes.join(', ')}. ` +
        `A resume continues the same schedule: restore these values in ${CONFIG_FILE}, or start a new run with trqat train`,
    );
  }
  const plugins = await loadPlugins(config, options);
  const changed = pluginChanges(checkpointed.controller.plugins, identities(plugins));
  if (changed.length > 0) {
    const allowed = options.allowChangedPlugins && changed.every((change) => change.includes(' changed ('));
    if (!allowed) {
      throw new ConfigError(
        `the controller's plug-ins differ from those of the checkpoint of step ${checkpoint.step}: ${changed.join('; ')}. ` +
          'A resume continues with the same code: restore it' + (changed.some((c) => c.includes(' changed (')) ? ', or pass --allow-changed-plugins (resume(dir, {allowChangedPlugins: true})) to continue with the new code' : ''),
      );
    }
    warn(`continuing with changed plug-in code: ${changed.join('; ')}`);
  }
  if (info.status === 'running') {
    warn(`run.json still says "running": its controller ended without closing the run (killed?); continuing from the checkpoint of step ${checkpoint.step}`);
  }
  return launch(dir, config, checkpoint, options, plugins, JSON.stringify(config) !== JSON.stringify(stored));
}

/**
 * config.json holds every setting of the run's config; a top-level one that is missing (a hand edit) would
 * silently become its defaults. It is rebuilt from the config the checkpoint recorded, and said so;
 * without a recorded config (an older checkpoint) the resume is refused.
 */
function rebuildSections(stored: unknown, recorded: ResolvedConfig | undefined, step: number, warn: (message: string) => void): unknown {
  if (stored === null || typeof stored !== 'object' || Array.isArray(stored)) return stored; // parseConfig names the problem
  const missing = Object.keys(configSchema.shape).filter((key) => !(key in stored) && (!recorded || key in recorded));
  if (missing.length === 0) return stored;
  const names = missing.join(', ');
  if (!recorded) throw new ConfigError(`${CONFIG_FILE} lacks ${names}, and the checkpoint of step ${step} records no config to rebuild it from: restore it, or start a new run with trqat train`);
  warn(`${CONFIG_FILE} lacks ${names}: rebuilt from the config recorded in the checkpoint of step ${step}`);
  return { ...stored, ...Object.fromEntries(missing.map((key) => [key, recorded[key as keyof ResolvedConfig]])) };
}

/** Opens the run; unless the ranks are launched elsewhere, it starts nproc_per_node worker ranks here. */
async function launch(runDir: string, config: ResolvedConfig, checkpoint: CheckpointRef | null, options: RunOptions, plugins: Plugins, configChanged = false): Promise<RunHandle> {
  return withRunViews(runDir, config, options, async (withViews) => {
    // The first start-up phase: Python starts and imports torch (seconds) before a worker can say anything itself.
    const starting = () => withViews.onEvent?.({ type: 'progress', phase: 'worker', done: 0, total: null });
    const launchRanks = config.worker.launch === 'local' ? (run: RunLauncher) => (starting(), startRanks(run, config, runDir, options.workerEnv)) : undefined;
    return (await Run.open({ kind: 'managed', runDir, config, checkpoint, configChanged, launchRanks, plugins }, withViews)).handle();
  });
}

/** nproc_per_node worker processes with the run's credentials and, with several, the torch.distributed contract. */
async function startRanks(run: RunLauncher, config: ResolvedConfig, runDir: string, extraEnv: Record<string, string> = {}): Promise<void> {
  const ranks = config.worker.nproc_per_node;
  const masterPort = ranks > 1 ? await freePort() : 0;
  const env = { ...run.peerEnv(), ...workerEnv(), ...extraEnv };
  for (let rank = 0; rank < ranks; rank++) {
    run.supervise(
      new RunProcess(rank, {
        command: workerCommand(config.worker.python),
        env: ranks > 1 ? { ...env, ...rankEnv(rank, ranks, masterPort) } : env,
        stdio: 'pipe',
        logPath: join(runDir, logName(rank, ranks)),
      }),
    );
  }
}
