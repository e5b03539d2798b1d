import { randomBytes, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import { curveKeyPair } from 'zeromq';
import { isLoopback, reachableEndpoint } from '../config/endpoint.js';
import type { ResolvedConfig } from '../config/resolve.js';
import { RUN_FILE_MODE, writeFileAtomic } from '../files.js';


/**
 * Who may join a run: every hello carries the run's secret, made per run and handed only to the
 * run's own processes (environment variables, or an owner-only file); beyond loopback the socket
 * also speaks ZeroMQ CURVE, so a peer without the server's key cannot even connect.
 */
export interface Credentials {
  secret: string;
  curve: { publicKey: string; secretKey: string } | null;
}

/** The file a rank started elsewhere reads (TRQAT_AUTH_FILE): endpoint, secret and server key, mode 0600. */
export const AUTH_FILE = 'auth.json';

/** Fresh credentials for a run: always a secret; CURVE keys where `curve` asks for them (resolveConfig checked the combination). */
export function makeCredentials(endpoint: string, curve: 'auto' | 'on' | 'off'): Credentials {
  const useCurve = curve === 'on' || (curve === 'auto' && !isLoopback(endpoint));
  return { secret: randomBytes(24).toString('hex'), curve: useCurve ? curveKeyPair() : null };
}

/** Constant-time comparison, so the time of a refusal says nothing about the secret. */
export function secretMatches(credentials: Credentials, given: string): boolean {
  const expected = Buffer.from(credentials.secret);
  const actual = Buffer.from(given);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

type Liveness = Pick<ResolvedConfig['worker'], 'heartbeat_interval_ms' | 'heartbeat_timeout_ms'>;

/**
 * How long a session waits for a silent controller before it gives up: within the heartbeat timeout
 * of the run (4 s with the defaults; python/trqat/transport.py's DEFAULT_CONTROLLER_TIMEOUT_MS is
 * the same), so that no process outlives a killed controller by much longer than that.
 */
export function controllerTimeoutMs(worker: Liveness): number {
  const { heartbeat_interval_ms: interval, heartbeat_timeout_ms: timeout } = worker;
  return Math.max(2 * interval, timeout - interval);
}

/** The environment a local process of the run gets (never argv: other users can read that in ps). */
export function peerEnv(credentials: Credentials, endpoint: string, worker: Liveness, runDir: string): Record<string, string> {
  return {
    TRQAT_ENDPOINT: endpoint,
    TRQAT_SECRET: credentials.secret,
    ...(credentials.curve ? { TRQAT_SERVER_KEY: credentials.curve.publicKey } : {}),
    ...controllerEnv(worker),
    TRQAT_RUN_DIR: runDir,
    // A process this controller starts itself exits as soon as the controller is gone (its parent changes).
    TRQAT_CONTROLLER_PID: String(process.pid),
  };
}

/** The liveness settings a session reads (TRQAT_HEARTBEAT_MS, TRQAT_CONTROLLER_TIMEOUT_MS; the same in auth.json). */
export function controllerEnv(worker: Liveness): Record<string, string> {
  return { TRQAT_HEARTBEAT_MS: String(worker.heartbeat_interval_ms), TRQAT_CONTROLLER_TIMEOUT_MS: String(controllerTimeoutMs(worker)) };
}

/** Writes `<runDir>/auth.json` readable by its owner only, with the run's liveness settings; returns its path. */
export function writeAuthFile(runDir: string, credentials: Credentials, endpoint: string, worker: Liveness): string {
  const path = join(runDir, AUTH_FILE);
  const content = {
    endpoint: reachableEndpoint(endpoint),
    secret: credentials.secret,
    server_key: credentials.curve?.publicKey ?? null,
    heartbeat_ms: worker.heartbeat_interval_ms,
    controller_timeout_ms: controllerTimeoutMs(worker),
  };
  writeFileAtomic(path, `${JSON.stringify(content, null, 2)}\n`, RUN_FILE_MODE); // owner-only from its creation on
  return path;
}
