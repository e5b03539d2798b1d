import { loadConfig } from '../config/load.js';
import type { ResolvedConfig } from '../config/resolve.js';
import { TrqatError } from '../errors.js';
import { runScript, serve, type ServeEvent, type ServeSummary } from '../run/serve.js';
import { duration, formatEvent } from './progress.js';
import { stopOnSignals } from './signals.js';

/** `trqat run` / `trqat serve` arguments: --config FILE, --set path=value, and (run) the command. */
export interface ClientRunArgs {
  config: string | null;
  overrides: string[];
  command: string[];
  help: boolean;
}

/**
 * Parses the arguments after `run` or `serve`. Options come first; `--` (or the first argument
 * that is not an option) starts the command, whose own options are left alone.
 */
export function parseClientRunArgs(argv: readonly string[], name: 'run' | 'serve'): ClientRunArgs {
  const args: ClientRunArgs = { config: null, overrides: [], command: [], help: false };
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    const value = (option: string): string => {
      const eq = token.indexOf('=');
      if (eq > 0) return token.slice(eq + 1);
      const next = argv[++i];
      if (next === undefined) throw new TrqatError(`trqat ${name}: ${option} needs a value`, 2);
      return next;
    };
    if (token === '--') {
      args.command = argv.slice(i + 1);
      break;
    }
    if (token === '--config' || token === '-c' || token.startsWith('--config=')) args.config = value('--config');
    else if (token === '--set' || token.startsWith('--set=')) args.overrides.push(value('--set'));
    else if (token === '--help' || token === '-h') args.help = true;
    else if (token.startsWith('-')) throw new TrqatError(`trqat ${name}: unknown option ${token} (the command goes after "--")`, 2);
    else if (name === 'run') {
      args.command = argv.slice(i);
      break;
    } else if (args.config === null) args.config = token;
    else throw new TrqatError(`trqat serve: unexpected argument ${token}`, 2);
  }
  return args;
}

/** A line for a client-run event, or null; step lines follow `logEvery`. */
export function formatServeEvent(event: ServeEvent, logEvery: number): string | null {
  switch (event.type) {
    case 'listening':
      return null;
    case 'client':
      return `client rank ${event.client.rank}/${event.client.world_size} connected (pid ${event.client.pid} on ${event.client.hostname}, ${event.client.device}, trqat ${event.client.trqat_version})`;
    case 'client-left':
      return event.reason === 'bye' ? null : `client rank ${event.client.rank} left: ${event.reason}`;
    case 'step': {
      const line = formatEvent(event, logEvery);
      return line === null ? null : line.replace('acc NaN%', 'acc -').replace('loss NaN', 'loss -');
    }
    default:
      return formatEvent(event, logEvery);
  }
}

export function formatServeSummary(summary: ServeSummary): string {
  const percent = (value: number | null) => (value === null ? '-' : `${value.toFixed(2)}%`);
  const head = summary.status === 'completed' ? 'done' : 'stopped';
  return (
    `${head}: step ${summary.step}/${summary.total_steps}, final top-1 ${summary.final_top1 === null ? 'not reported' : percent(summary.final_top1)}, ` +
    `best ${percent(summary.best_top1)}, ${duration(summary.elapsed_s)}\nrun folder: ${summary.run_dir}`
  );
}

/** `trqat run [--config F] [--set k=v] -- command ...`: returns the exit status (the command's). */
export async function runCommand(argv: readonly string[], usage: string): Promise<number> {
  const args = parseClientRunArgs(argv, 'run');
  if (args.help) {
    console.log(usage);
    return 0;
  }
  if (args.command.length === 0) throw new TrqatError(`trqat run needs the command to start, e.g. trqat run -- python train.py\n${usage}`, 2);
  const config = loadConfig(args.config, args.overrides);
  // The script owns stdout; the controller's lines go to stderr.
  const say = (line: string) => console.error(prefix(line, '[trqat] '));
  let child: { pid: number | undefined; kill(signal?: NodeJS.Signals): boolean } | null = null;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    // A Ctrl-C in a terminal reaches the whole foreground process group, the script included:
    // forwarding it would interrupt the script twice. Signals sent to trqat alone are forwarded.
    const fromTerminal = signal === 'SIGINT' && process.stdin.isTTY === true;
    if (signals >= 3) {
      say('killing the script');
      child?.kill('SIGKILL');
    } else if (!fromTerminal) child?.kill(signal);
    if (signals === 1) say('waiting for the script to stop (Ctrl-C twice more to kill it)');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  try {
    const result = await runScript(config, args.command, {
      onEvent: (event) => {
        if (event.type === 'listening') say(`listening on ${event.endpoint}; starting: ${args.command.join(' ')}`);
        else {
          const line = formatServeEvent(event, config.train.log_every);
          if (line !== null) say(line);
        }
      },
      onSpawn: (spawned) => {
        child = spawned;
      },
    });
    const how = result.exit.signal ? `was killed by ${result.exit.signal}` : `exited with code ${result.exit.code}`;
    if (result.error) {
      console.error(`trqat: ${result.error.message}\ntrqat: the run is marked failed: ${result.runDir}`);
    } else if (result.summary) {
      say(formatServeSummary(result.summary));
      if (result.exitCode !== 0) console.error(`trqat: the training script ${how} after the run ended (${result.summary.status})`);
    }
    return result.exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  }
}

/** `trqat serve [--config F] [--set k=v]`: prints the endpoint, serves one client run. */
export async function serveCommand(argv: readonly string[], usage: string): Promise<number> {
  const args = parseClientRunArgs(argv, 'serve');
  if (args.help) {
    console.log(usage);
    return 0;
  }
  const config: ResolvedConfig = loadConfig(args.config, args.overrides);
  const stop = stopOnSignals({
    first: 'stopping: clients get "stop" with their next step (Ctrl-C again to stop at once)',
    second: 'stopping at once',
  });
  try {
    const handle = await serve(config, {
      signal: stop.signal,
      onEvent: (event) => {
        const line = formatServeEvent(event, config.train.log_every);
        if (line !== null) (event.type === 'warning' ? console.error : console.log)(line);
      },
    });
    console.log(`trqat controller listening on ${handle.endpoint}`);
    console.log(`run folder: ${handle.runDir}`);
    console.log(`connect a training script with: TRQAT_ENDPOINT=${handle.endpoint} python your_script.py`);
    const summary = await handle.done;
    console.log(formatServeSummary(summary));
    return stop.signal.aborted ? 130 : 0;
  } finally {
    stop.release();
  }
}

function prefix(text: string, mark: string): string {
  return text
    .split('\n')
    .map((line) => (line.length > 0 ? mark + line : line))
    .join('\n');
}
