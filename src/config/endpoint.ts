import { hostname } from 'node:os';

/** True for endpoints no other machine can reach: ipc://, and tcp:// on 127.0.0.0/8, localhost or ::1. */
export function isLoopback(endpoint: string): boolean {
  if (endpoint.startsWith('ipc://') || endpoint.startsWith('inproc://')) return true;
  const host = /^tcp:\/\/(\[[^\]]+\]|[^:/]+)/.exec(endpoint)?.[1] ?? '';
  return /^127\./.test(host) || host === 'localhost' || host === '[::1]';
}

/** An endpoint other machines can use: a wildcard bind address becomes this host's name. */
export function reachableEndpoint(endpoint: string): string {
  return endpoint.replace(/^tcp:\/\/(\*|0\.0\.0\.0|\[::\])(?=:)/, `tcp://${hostname()}`);
}
