import type { ResolvedConfig } from '../config/resolve.js';
import { TrqatError } from '../errors.js';
import { exitStatus, freePort, rankEnv, RunProcess, scriptEnv, threadEnv, type ProcessExit } from '../bridge/launcher.js';
import { withRunViews } from '../dashboard/live.js';
import { createRunDir } from '../files.js';
import type { RunSummary } from '../run/record.js';
import { Run, type RunHandle, type RunLauncher, type RunOptions } from '../run/run.js';
import { loadPlugins, type PluginOptions } from '../schedules/plugin.js';

/**
 * Client runs: the user's own training script drives the steps, this controller decides every
 * step's LRs and keeps the run record. The run folder is the same as a managed run's (config.json,
 * run.json, metrics.jsonl, summary.json; no checkpoints: the script saves its own, with the
 * controller state from `client.state_dict()`), plus auth.json (owner-only) for scripts started
 * elsewhere.
 */

export interface ServeOptions extends RunOptions, PluginOptions {
  /** Recorded in run.json (trqat run). */
  command?: string[];
}

/** Starts a client run: creates the run folder, binds the endpoint, serves the schedule to every rank that connects. */
export async function serve(config: ResolvedConfig, options: ServeOptions = {}): Promise<RunHandle> {
  const plugins = await loadPlugins(config, options); // a module that cannot be loaded: before the run folder exists
  const runDir = createRunDir(config);
  return withRunViews(runDir, config, options, async (withViews) => (await Run.open({ kind: 'client', runDir, config, checkpoint: null, command: options.command, plugins }, withViews)).handle());
}

export interface RunScriptOptions extends RunOptions, PluginOptions {
  /** Extra environment for the command (TRQAT_* are set by trqat). */
  env?: Record<string, string>;
  cwd?: string;
  /** 'inherit' (default: the script writes to this terminal) or 'pipe' (collected in the result). */
  stdio?: 'inherit' | 'pipe';
  /** Receives the started processes, e.g. to forward signals. */
  onSpawn?: (processes: readonly RunProcess[]) => void;
  /** The torch.distributed contract for a single copy too, as torchrun sets it (`--nproc-per-node 1`); several copies always get it. */
  rankEnv?: boolean;
}

export interface RunScriptResult {
  runDir: string;
  /** How the command ended (the first copy that failed, else rank 0's); code 127 when it could not be started. */
  exit: ProcessExit;
  /** The exit status `trqat run` ends with: the command's, 128 + signal number when it was killed. */
  exitCode: number;
  /** The run's summary, or null when it failed (then `error` says why). */
  summary: RunSummary | null;
  error: Error | null;
  stdout: string;
  stderr: string;
}

/**
 * `trqat run -- <command>`: serves a client run and starts the command with the run's endpoint and
 * credentials in its environment; with worker.nproc_per_node > 1, that many copies with the
 * torch.distributed environment contract (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT),
 * which is what torchrun would do (one copy gets it with `rankEnv`). The run ends when every copy has exited.
 */
export async function runScript(config: ResolvedConfig, command: readonly string[], options: RunScriptOptions = {}): Promise<RunScriptResult> {
  if (command.length === 0) throw new TrqatError('trqat run needs a command to start, e.g. trqat run -- python train.py', 2);
  const plugins = await loadPlugins(config, options); // a module that cannot be loaded: before the run folder exists
  const runDir = createRunDir(config);
  const copies = config.worker.nproc_per_node;
  // Without an explicit request one copy keeps the caller's environment: a launcher in the command (srun, torchrun) sets its own.
  const contract = copies > 1 || options.rankEnv === true;
  const processes: RunProcess[] = [];
  /** The copies in the order they exited: the first that failed by itself is the cause (not one trqat stopped after it). */
  const exitOrder: RunProcess[] = [];
  const launchRanks = async (run: RunLauncher): Promise<void> => {
    const masterPort = contract ? await freePort() : 0;
    for (let rank = 0; rank < copies; rank++) {
      const env = { ...scriptEnv(), ...threadEnv(copies), ...options.env, ...run.peerEnv(), ...(contract ? rankEnv(rank, copies, masterPort) : {}) };
      const child = new RunProcess(rank, { command, env, cwd: options.cwd, stdio: options.stdio === 'pipe' ? 'collect' : 'inherit' });
      run.supervise(child);
      processes.push(child);
      void child.exited.then(() => exitOrder.push(child));
    }
    options.onSpawn?.(processes);
  };
  const handle = await withRunViews(runDir, config, options, async (withViews) =>
    (await Run.open({ kind: 'client', runDir, config, checkpoint: null, command: [...command], launchRanks, plugins }, withViews)).handle(),
  );
  const exits = await Promise.all(processes.map((p) => p.exited));
  const error = await handle.done.then(
    () => null,
    (failure: Error) => failure,
  );
  const cause = exitOrder.find((p) => p.failedByItself) ?? exitOrder.find((p) => exitStatus(p.exit!) !== 0);
  const exit = cause?.exit ?? exits[0]!;
  let exitCode = exitStatus(exit);
  // The run failed (a client went silent) and the script was stopped for it: never report success.
  if (error && exitCode === 0) exitCode = 1;
  return {
    runDir: handle.runDir,
    exit,
    exitCode,
    summary: error ? null : await handle.done,
    error,
    stdout: processes.map((p) => p.output.stdout).join(''),
    stderr: processes.map((p) => p.output.stderr).join(''),
  };
}
