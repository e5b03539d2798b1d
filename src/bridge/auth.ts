import { randomBytes, timingSafeEqual } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { curveKeyPair } from 'zeromq';
import { RUN_FILE_MODE, writeFileAtomic } from '../run/files.js';

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

/** True for endpoints no other machine can reach: ipc://, and tcp:// on 127.0.0.0/8, localhost or ::1. */
export function isLoopback(endpoint: string): boolean {
  if (endpoint.startsWith('ipc://') || endpoint.startsWith('inproc://')) return true;
  const host = /^tcp:\/\/(\[[^\]]+\]|[^:/]+)/.exec(endpoint)?.[1] ?? '';
  return /^127\./.test(host) || host === 'localhost' || host === '[::1]';
}

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

/** The environment a local process of the run gets (never argv: other users can read that in ps). */
export function peerEnv(credentials: Credentials, endpoint: string): Record<string, string> {
  return {
    TRQAT_ENDPOINT: endpoint,
    TRQAT_SECRET: credentials.secret,
    ...(credentials.curve ? { TRQAT_SERVER_KEY: credentials.curve.publicKey } : {}),
  };
}

/** An endpoint other machines can use: a wildcard bind address becomes this host's name. */
export function reachableEndpoint(endpoint: string): string {
  return endpoint.replace(/^tcp:\/\/(\*|0\.0\.0\.0|\[::\])(?=:)/, `tcp://${hostname()}`);
}

/** Writes `<runDir>/auth.json` readable by its owner only; returns its path. */
export function writeAuthFile(runDir: string, credentials: Credentials, endpoint: string): string {
  const path = join(runDir, AUTH_FILE);
  const content = {
    endpoint: reachableEndpoint(endpoint),
    secret: credentials.secret,
    server_key: credentials.curve?.publicKey ?? null,
  };
  writeFileAtomic(path, `${JSON.stringify(content, null, 2)}\n`, RUN_FILE_MODE); // owner-only from its creation on
  return path;
}
