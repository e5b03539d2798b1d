import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import { availableParallelism, constants as osConstants } from 'node:os';
import { execa, type ResultPromise } from 'execa';
import { PACKAGE_ROOT } from '../paths.js';
import { WriteError } from '../errors.js';

/** How long a process gets to exit after SIGTERM before it is killed (execa escalates). */
export const KILL_GRACE_MS = 5000;
/** Lines of a process's stderr kept for error messages. */
const STDERR_TAIL_LINES = 30;

export interface ProcessExit {
  code: number | null;
  signal: string | null;
  /** Why the process could not be started at all (no such interpreter, not executable). */
  spawnError?: string;
}

/** Python interpreter: config, then $TRQAT_PYTHON, then the project's .venv, then python3 on PATH. */
export function resolvePython(configured: string | null): string {
  if (configured) return configured;
  if (process.env['TRQAT_PYTHON']) return process.env['TRQAT_PYTHON'];
  const venv = join(PACKAGE_ROOT, '.venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

/** PYTHONPATH with the project's python/ first, so the trqat package imports from this checkout. */
export function pythonPath(): string {
  return [join(PACKAGE_ROOT, 'python'), process.env['PYTHONPATH']].filter(Boolean).join(delimiter);
}

/**
 * Environment for a user's script under `trqat run`: the project's .venv first on PATH (so "python"
 * is the interpreter setup made) unless the user has activated an environment of their own, and the
 * trqat package importable even without `pip install -e python/`.
 */
export function scriptEnv(): Record<string, string> {
  const env: Record<string, string> = { PYTHONPATH: pythonPath() };
  const venvBin = join(PACKAGE_ROOT, '.venv', 'bin');
  const ownEnvironment = process.env['VIRTUAL_ENV'] || process.env['CONDA_PREFIX'];
  if (!ownEnvironment && existsSync(venvBin)) env['PATH'] = [venvBin, process.env['PATH']].filter(Boolean).join(delimiter);
  return env;
}

/** A free TCP port on loopback for torch.distributed's rendezvous (MASTER_PORT). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** The standard environment contract of torch.distributed for local rank `rank` of `world` (torchrun sets the same). */
export function rankEnv(rank: number, world: number, masterPort: number): Record<string, string> {
  return {
    RANK: String(rank),
    LOCAL_RANK: String(rank),
    WORLD_SIZE: String(world),
    LOCAL_WORLD_SIZE: String(world),
    MASTER_ADDR: '127.0.0.1',
    MASTER_PORT: String(masterPort),
  };
}

/**
 * OMP_NUM_THREADS for each of `copies` processes on this machine: the cores shared out, as the managed
 * worker does (worker.threads), unless the caller set it. torchrun sets 1 for the same reason:
 * processes whose threads outnumber the cores make every OpenMP region wait for a descheduled one.
 */
export function threadEnv(copies: number, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  if (copies <= 1 || env['OMP_NUM_THREADS']) return {};
  return { OMP_NUM_THREADS: String(Math.max(1, Math.floor(availableParallelism() / copies))) };
}

export interface LaunchOptions {
  command: readonly string[];
  env: Record<string, string>;
  cwd?: string;
  /**
   * 'pipe': stderr is kept as a tail (and appended to `logPath`); 'inherit': the user's script writes
   * to this terminal; 'collect': stdout and stderr are kept whole (`output`), for callers that show them.
   */
  stdio: 'pipe' | 'inherit' | 'collect';
  logPath?: string | null;
}

/** One OS process of the run (a worker rank, or one copy of the user's command), started with execa. */
export class RunProcess {
  readonly exited: Promise<ProcessExit>;
  /** Settles when its log (`logPath`) cannot be written (a full disk): the error names the file and the cause. */
  readonly logFailed: Promise<WriteError>;
  private readonly tail: string[] = [];
  private partialLine = '';
  private exitInfo: ProcessExit | null = null;
  private readonly log: WriteStream | null;
  private readonly child: ResultPromise;

  constructor(
    readonly rank: number,
    options: LaunchOptions,
  ) {
    const { stdio } = options;
    const inherit = stdio === 'inherit';
    this.child = execa(options.command[0]!, options.command.slice(1), {
      cwd: options.cwd,
      env: options.env,
      stdin: inherit ? 'inherit' : 'ignore',
      stdout: inherit ? 'inherit' : stdio === 'collect' ? 'pipe' : 'ignore',
      stderr: inherit ? 'inherit' : 'pipe',
      buffer: stdio === 'collect',
      reject: false,
      forceKillAfterDelay: KILL_GRACE_MS,
    });
    const logPath = stdio === 'pipe' ? (options.logPath ?? null) : null;
    this.log = logPath ? createWriteStream(logPath, { flags: 'a' }) : null;
    // A full or failing disk must not take the controller down: the in-memory tail still works,
    // and whoever supervises the process hears of it once.
    this.logFailed = new Promise((resolve) => {
      this.log?.once('error', (error) => resolve(new WriteError(logPath!, error)));
    });
    this.log?.on('error', () => this.log?.destroy());
    if (stdio === 'pipe') this.child.stderr?.on('data', (chunk: Buffer) => this.onStderr(chunk));
    this.exited = this.child.then(
      (result) => {
        this.output = { stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
        return this.onExit(exitOf(result));
      },
      (error: Parameters<typeof exitOf>[0]) => this.onExit(exitOf(error)),
    );
  }

  /** stdout and stderr of a 'collect' process, once it has exited. */
  output = { stdout: '', stderr: '' };

  get pid(): number | undefined {
    return this.child.pid;
  }

  get exit(): ProcessExit | null {
    return this.exitInfo;
  }

  /** The last lines the process wrote to stderr (piped processes only). */
  stderrTail(): string {
    return [...this.tail, this.partialLine].filter((line) => line.length > 0).join('\n');
  }

  /** The first signal trqat sent it (`stop`): an exit by it is trqat's doing, not the cause of a failure. */
  stoppedWith: NodeJS.Signals | null = null;

  /** SIGTERM (or `signal`), then SIGKILL after KILL_GRACE_MS if it is still there. */
  stop(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.exitInfo !== null) return;
    this.stoppedWith ??= signal;
    this.child.kill(signal);
  }

  /** It ended badly by itself (not stopped by trqat): a crash, a non-zero code, a signal someone else sent. */
  get failedByItself(): boolean {
    return this.exitInfo !== null && exitStatus(this.exitInfo) !== 0 && this.stoppedWith === null;
  }

  private onStderr(chunk: Buffer): void {
    if (this.log && !this.log.destroyed) this.log.write(chunk);
    const lines = (this.partialLine + chunk.toString('utf8')).split('\n');
    this.partialLine = lines.pop() ?? '';
    this.tail.push(...lines);
    if (this.tail.length > STDERR_TAIL_LINES) this.tail.splice(0, this.tail.length - STDERR_TAIL_LINES);
  }

  private async onExit(exit: ProcessExit): Promise<ProcessExit> {
    this.exitInfo = exit;
    if (this.log && !this.log.destroyed) await new Promise<void>((resolve) => this.log!.end(resolve));
    return exit;
  }
}

/** The environment variable naming a fork server's socket (python/trqat/forkserver.py). */
export const FORKSERVER_ENV = 'TRQAT_FORKSERVER';

/**
 * `python -u -m module`, or `python -u file.py`, for the Python processes trqat starts (`target` names
 * one or the other). With a fork server ($TRQAT_FORKSERVER), a light client that has it forked there
 * (torch already imported) and stands in for it: the same stdio, signals and exit.
 */
export function pythonCommand(python: string | null, target: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const direct = target.endsWith('.py') ? [target] : ['-m', target];
  return [resolvePython(python), '-u', ...(env[FORKSERVER_ENV] ? ['-m', 'trqat.forkserver', 'run', target] : direct)];
}

/** The command of a managed worker rank. */
export function workerCommand(python: string | null, env: NodeJS.ProcessEnv = process.env): string[] {
  return pythonCommand(python, 'trqat.worker', env);
}

/** Environment every managed worker gets on top of the run's (Run.peerEnv): this checkout's trqat package. */
export function workerEnv(): Record<string, string> {
  return { PYTHONPATH: pythonPath() };
}

/** How a process ended, for messages. */
export function describeExit(exit: ProcessExit): string {
  if (exit.spawnError) return `could not be started (${exit.spawnError})`;
  if (exit.signal) return `was killed by ${exit.signal}`;
  return `exited with code ${exit.code}`;
}

/** The exit status a shell would report: the code, or 128 + the signal's number. */
export function exitStatus(exit: ProcessExit): number {
  if (exit.spawnError) return 127;
  if (exit.signal) return 128 + ((osConstants.signals as Record<string, number>)[exit.signal] ?? 0);
  return exit.code ?? 1;
}

/** execa reports a process that never started with no exit code and no signal, and a cause. */
function exitOf(result: { exitCode?: number; signal?: string; failed?: boolean; cause?: unknown; shortMessage?: string }): ProcessExit {
  const exit: ProcessExit = { code: result.exitCode ?? null, signal: result.signal ?? null };
  if (result.failed && exit.code === null && exit.signal === null) {
    exit.spawnError = result.cause instanceof Error ? result.cause.message : (result.shortMessage ?? 'unknown reason');
  }
  return exit;
}
