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

/**
 * Takes `--dashboard X` (or `--dashboard=X`) out of a command's options and returns the rest with
 * the equivalent `--set` options in front. Options end at `--`, and for `run` also at the first
 * argument that is not an option (the user's command, whose own options are left alone).
 */
export function expandDashboardFlag(argv: readonly string[], commandStartsAtPositional: boolean): string[] {
  const rest: string[] = [];
  const sets: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '--' || (commandStartsAtPositional && !token.startsWith('-') && !isOptionValue(argv, i))) {
      rest.push(...argv.slice(i));
      break;
    }
    if (token === '--dashboard' || token.startsWith('--dashboard=')) {
      const value = token.includes('=') ? token.slice(token.indexOf('=') + 1) : argv[++i];
      if (value === undefined) throw new TrqatError('--dashboard needs a value: off, on, HOST or HOST:PORT', 2);
      for (const override of dashboardOverrides(value)) sets.push('--set', override);
    } else {
      rest.push(token);
    }
  }
  return [...sets, ...rest];
}

/** Whether argv[i] is the value of the option before it (`--config FILE`, `--set k=v`). */
function isOptionValue(argv: readonly string[], i: number): boolean {
  const previous = argv[i - 1];
  return previous === '--config' || previous === '-c' || previous === '--set';
}
