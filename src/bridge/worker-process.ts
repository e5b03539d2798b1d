import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { delimiter, join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { PACKAGE_ROOT } from '../paths.js';

/** How long a worker gets to exit after SIGTERM before it is killed. */
export const KILL_GRACE_MS = 5000;
/** Lines of the worker's stderr kept for error messages. */
const STDERR_TAIL_LINES = 30;

export interface WorkerExit {
  code: number | null;
  signal: string | null;
  /** Why the process could not be started at all (no such interpreter, not executable). */
  spawnError?: string;
}

export interface SpawnOptions {
  python: string | null;
  endpoint: string;
  heartbeatMs: number;
  controllerTimeoutMs: number;
  /** The worker's stderr is appended here as well as kept in memory. */
  logPath: string | null;
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

/** The worker's OS process: started with execa, stderr kept as a tail for error reports. */
export class WorkerProcess {
  readonly exited: Promise<WorkerExit>;
  private readonly tail: string[] = [];
  private partialLine = '';
  private exitInfo: WorkerExit | null = null;
  private readonly log: WriteStream | null;

  private constructor(
    private readonly child: ResultPromise,
    logPath: string | null,
  ) {
    this.log = logPath ? createWriteStream(logPath, { flags: 'a' }) : null;
    // A full or failing disk must not take the controller down: the in-memory tail still works.
    this.log?.on('error', () => this.log?.destroy());
    child.stderr?.on('data', (chunk: Buffer) => this.onStderr(chunk));
    this.exited = child.then(
      (result) => this.onExit(exitOf(result)),
      (error: Parameters<typeof exitOf>[0]) => this.onExit(exitOf(error)),
    );
  }

  static spawn(options: SpawnOptions): WorkerProcess {
    const python = resolvePython(options.python);
    const child = execa(python, ['-u', '-m', 'trqat.worker'], {
      env: {
        TRQAT_ENDPOINT: options.endpoint,
        TRQAT_HEARTBEAT_MS: String(options.heartbeatMs),
        TRQAT_CONTROLLER_TIMEOUT_MS: String(options.controllerTimeoutMs),
        PYTHONPATH: pythonPath(),
      },
      stdin: 'ignore',
      stdout: 'ignore',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      forceKillAfterDelay: KILL_GRACE_MS,
    });
    return new WorkerProcess(child, options.logPath);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get exit(): WorkerExit | null {
    return this.exitInfo;
  }

  /** The last lines the worker wrote to stderr, for error messages. */
  stderrTail(): string {
    return [...this.tail, this.partialLine].filter((line) => line.length > 0).join('\n');
  }

  terminate(): void {
    if (this.exitInfo === null) this.child.kill('SIGTERM');
  }

  kill(): void {
    if (this.exitInfo === null) this.child.kill('SIGKILL');
  }

  private onStderr(chunk: Buffer): void {
    this.log?.write(chunk);
    const lines = (this.partialLine + chunk.toString('utf8')).split('\n');
    this.partialLine = lines.pop() ?? '';
    this.tail.push(...lines);
    if (this.tail.length > STDERR_TAIL_LINES) this.tail.splice(0, this.tail.length - STDERR_TAIL_LINES);
  }

  private async onExit(exit: WorkerExit): Promise<WorkerExit> {
    this.exitInfo = exit;
    if (this.log && !this.log.destroyed) await new Promise<void>((resolve) => this.log!.end(resolve));
    return exit;
  }
}

/** execa reports a process that never started with no exit code and no signal, and a cause. */
function exitOf(result: { exitCode?: number; signal?: string; failed?: boolean; cause?: unknown; shortMessage?: string }): WorkerExit {
  const exit: WorkerExit = { code: result.exitCode ?? null, signal: result.signal ?? null };
  if (result.failed && exit.code === null && exit.signal === null) {
    exit.spawnError = result.cause instanceof Error ? result.cause.message : (result.shortMessage ?? 'unknown reason');
  }
  return exit;
}
