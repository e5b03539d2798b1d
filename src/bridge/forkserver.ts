// Starts a fork server (python/trqat/forkserver.py): torch imported once, each managed worker forked
// from it. For many short runs (the test suite, sweeps) where importing torch is most of a start.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { FORKSERVER_ENV, pythonPath, resolvePython } from './launcher.js';

/** How long the server may take to import torch and listen. */
const READY_TIMEOUT_MS = 60_000;
/** Characters of the server's log kept (a line per fork). */
const LOG_KEEP = 64 * 1024;

export interface ForkServer {
  /** The socket: the value of $TRQAT_FORKSERVER for the controllers that should use it. */
  readonly socket: string;
  readonly env: Record<string, string>;
  /** The end of the server's stderr: its start, and a line per forked process ("forked PID for MODULE"). */
  log(): string;
  stop(): Promise<void>;
}

/** Starts a fork server with `python` (or the project's interpreter); resolves once it listens. */
export async function startForkServer(python: string | null = null): Promise<ForkServer> {
  const dir = mkdtempSync(join(tmpdir(), 'trqat-forkserver-'));
  const socket = join(dir, 'socket');
  const env: Record<string, string> = { PYTHONPATH: pythonPath() };
  const server = execa(resolvePython(python), ['-m', 'trqat.forkserver', 'serve', '--socket', socket, '--parent', String(process.pid)], {
    env,
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'pipe',
    buffer: false,
    reject: false,
  });
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the fork server did not start within ${READY_TIMEOUT_MS / 1000} s: ${stderr}`)), READY_TIMEOUT_MS);
    server.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-LOG_KEEP);
      if (stderr.includes(`socket ${socket}`)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void server.then((result) => {
      clearTimeout(timer);
      reject(new Error(`the fork server exited (${result.exitCode ?? result.signal}): ${stderr.trim()}`));
    });
  });
  return {
    socket,
    env: { [FORKSERVER_ENV]: socket },
    log: () => stderr,
    async stop() {
      server.kill('SIGTERM');
      await server;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The fork server of a test suite (vitest's globalSetup, scripts/pytest.mjs): null when
 * $TRQAT_FORKSERVER is already set (that one serves) or TRQAT_TEST_FORKSERVER=0; null with a warning
 * when it cannot start, since the suite runs the same without it, only slower.
 */
export async function suiteForkServer(warn: (message: string) => void = console.warn): Promise<ForkServer | null> {
  if (process.env[FORKSERVER_ENV] || process.env['TRQAT_TEST_FORKSERVER'] === '0') return null;
  return startForkServer().catch((error: Error) => {
    warn(`running the suite without a fork server: ${error.message}`);
    return null;
  });
}
