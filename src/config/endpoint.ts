import { isIP } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';

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

/**
 * Why the controller could not listen on `endpoint`, or null when it can try: the one check that
 * `trqat config` and every run share (the config's load refuses it, before a run folder exists).
 * A tcp:// address must be a wildcard (`*`, 0.0.0.0, ::), a name (a host or interface name, resolved
 * by ZeroMQ when it binds), or an IP address of this machine; the port 1-65535 or `*`.
 */
export function endpointProblem(endpoint: string): string | null {
  if (!endpoint.startsWith('tcp://')) return endpoint.length > 'ipc://'.length ? null : 'an ipc:// endpoint needs a path (ipc:///tmp/trqat.sock)';
  const match = /^tcp:\/\/(\[[^\]]*\]|[^:/\[\]]+):([^:/]+)$/.exec(endpoint);
  if (!match) return 'expected tcp://HOST:PORT (e.g. tcp://127.0.0.1:* for a free loopback port)';
  const [, rawHost, port] = match as unknown as [string, string, string];
  if (port !== '*' && !(/^\d+$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) return `port ${port} is not a port (1-65535, or * for a free one)`;
  const host = rawHost.startsWith('[') ? rawHost.slice(1, -1) : rawHost;
  if (host === '*' || isIP(host) === 0) return null; // a wildcard, or a name: ZeroMQ resolves it when it binds
  const mine = localAddresses();
  if (host === '0.0.0.0' || host === '::' || mine.includes(host.toLowerCase())) return null;
  return `${host} is not an address of this machine (its addresses: ${mine.join(', ')}); use tcp://127.0.0.1:* (this machine only) or tcp://0.0.0.0:PORT (ranks on other machines)`;
}

function localAddresses(): string[] {
  const addresses = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((info) => info.address.toLowerCase().replace(/%.*$/, '')));
  return [...new Set(['127.0.0.1', '::1', ...addresses])];
}
