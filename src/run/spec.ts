import type { ResolvedConfig } from '../config/resolve.js';
import type { RunProcess } from '../bridge/launcher.js';
import type { CheckpointRef } from './checkpoints.js';
import type { Plugins } from '../schedules/plugin.js';
import type { RunEvent, RunKind, RunSummary } from './record.js';

/** What starting a run's processes needs of the run. */
export interface RunLauncher {
  /** TRQAT_ENDPOINT, the credentials and the liveness settings, for processes this run starts. */
  peerEnv(): Record<string, string>;
  /** Watches a process this run started. */
  supervise(process: RunProcess): void;
}

export interface RunOptions {
  onEvent?: (event: RunEvent) => void;
  /** Aborting stops the run cleanly: the next step is the last, managed runs write a checkpoint. */
  signal?: AbortSignal;
  /** Client runs: after a stop, how long scripts get to say bye before the run is closed anyway. */
  stopGraceMs?: number;
  /** Managed runs: extra environment for the worker ranks (a sweep gives each run its CUDA_VISIBLE_DEVICES). */
  workerEnv?: Record<string, string>;
}

/** A run in progress: managed (`trqat train`) or client (`trqat run`, `trqat serve`) alike. */
export interface RunHandle {
  runDir: string;
  /** The endpoint sessions connect to (TRQAT_ENDPOINT). */
  endpoint: string;
  /** The environment a process of this run needs to join it (endpoint and credentials). */
  peerEnv: Record<string, string>;
  /** Resolves when the run ends (completed or stopped); rejects when it failed. */
  done: Promise<RunSummary>;
  /** Stops cleanly, like aborting `signal`. */
  stop(): void;
  /** Stops at once (a second Ctrl-C): the log is written, run.json says stopped, the processes are killed. */
  stopNow(reason: string): void;
}

export interface RunSpec {
  kind: RunKind;
  runDir: string;
  config: ResolvedConfig;
  /** Managed runs resumed from a checkpoint. */
  checkpoint: CheckpointRef | null;
  /** trqat run: the user's command, for run.json. */
  command?: string[];
  /** A resume changed settings (worker.*): config.json is rewritten. */
  configChanged?: boolean;
  /** Plug-ins of the controller (loadPlugins): run.json records them. */
  plugins?: Plugins;
  /** Starts the run's processes here (managed ranks with worker.launch=local, or trqat run's command); managed ranks again after a crash. */
  launchRanks?: (run: RunLauncher) => Promise<void>;
}
