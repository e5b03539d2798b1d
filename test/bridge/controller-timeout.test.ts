// The controller timeout: one rule on the controller's side, the same default on the sessions' side.
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { controllerEnv, controllerTimeoutMs, makeCredentials, writeAuthFile } from '../../src/bridge/auth.js';
import { loadConfig } from '../../src/config/load.js';

describe('the controller timeout', () => {
  it('stays within the heartbeat timeout, and at least two heartbeats long', () => {
    expect(controllerTimeoutMs({ heartbeat_interval_ms: 1000, heartbeat_timeout_ms: 5000 })).toBe(4000);
    expect(controllerTimeoutMs({ heartbeat_interval_ms: 1000, heartbeat_timeout_ms: 2000 })).toBe(2000);
    expect(controllerTimeoutMs({ heartbeat_interval_ms: 100, heartbeat_timeout_ms: 10_000 })).toBe(9900);
  });

  it("equals the Python sessions' default with the config's defaults", () => {
    const worker = loadConfig(null).worker;
    const python = readFileSync(join(__dirname, '../../python/trqat/transport.py'), 'utf8');
    const constant = (name: string) => Number(new RegExp(`^${name} = (\\d+)$`, 'm').exec(python)?.[1]);
    expect(constant('DEFAULT_CONTROLLER_TIMEOUT_MS')).toBe(controllerTimeoutMs(worker));
    expect(constant('DEFAULT_HEARTBEAT_MS')).toBe(worker.heartbeat_interval_ms);
  });

  it('reaches sessions by the environment and by auth.json alike', () => {
    const worker = { heartbeat_interval_ms: 250, heartbeat_timeout_ms: 3000 };
    expect(controllerEnv(worker)).toEqual({ TRQAT_HEARTBEAT_MS: '250', TRQAT_CONTROLLER_TIMEOUT_MS: '2750' });
    const dir = mkdtempSync(join(tmpdir(), 'trqat-auth-'));
    const path = writeAuthFile(dir, makeCredentials('tcp://127.0.0.1:5555', 'auto'), 'tcp://127.0.0.1:5555', worker);
    const auth = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    expect(auth).toMatchObject({ endpoint: 'tcp://127.0.0.1:5555', heartbeat_ms: 250, controller_timeout_ms: 2750 });
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });
});
