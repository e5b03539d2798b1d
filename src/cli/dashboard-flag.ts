import { TrqatError } from '../errors.js';

/**
 * `--dashboard off|on|HOST|HOST:PORT|:PORT` of train, resume, run and serve, as the config
 * overrides it stands for (dashboard.enabled, dashboard.host, dashboard.port).
 */
export function dashboardOverrides(value: string): string[] {
  if (value === 'off') return ['dashboard.enabled=false'];
  if (value === 'on') return ['dashboard.enabled=true'];
  const bracketed = /^\[(.+)\](?::(.*))?$/.exec(value); // [::1]:8080
  const colons = value.split(':').length - 1;
  const [host, port] = bracketed ? [bracketed[1]!, bracketed[2]] : colons === 1 ? value.split(':') : [value, undefined];
  if (port !== undefined && !/^\d{1,5}$/.test(port)) {
    throw new TrqatError(`--dashboard ${value}: use off, on, HOST, HOST:PORT or :PORT (e.g. --dashboard 0.0.0.0:8080)`, 2);
  }
  const overrides = ['dashboard.enabled=true'];
  if (host) overrides.push(`dashboard.host=${JSON.stringify(host)}`);
  if (port !== undefined) overrides.push(`dashboard.port=${port}`);
  return overrides;
}
