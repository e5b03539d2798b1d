import { loadConfig } from '../config/load.js';
import { TrqatError } from '../errors.js';
import type { RunProcess } from '../bridge/launcher.js';
import type { RunEvent, RunSummary } from '../run/record.js';
import { runScript, serve } from '../entry/serve.js';
import { duration } from '../format.js';
import { eventFormatter, ProgressPrinter } from './progress.js';
import { stopOnSignals } from './signals.js';

export function formatClientSummary(summary: RunSummary): string {
  const percent = (value: number | null) => (value === null ? '-' : `${value.toFixed(2)}%`);
  return (
    `${summary.status === 'completed' ? 'done' : 'stopped'}: step ${summary.step}/${summary.total_steps}, ` +
    `final top-1 ${summary.final_top1 === null ? 'not reported' : percent(summary.final_top1)}, ` +
    `best ${percent(summary.best_top1)}, ${duration(summary.elapsed_s)}\nrun folder: ${summary.run_dir}`
  );
}

/** `trqat run [--config F] [--set k=v] [--nproc-per-node N] -- command ...`: returns the command's exit status; `rankEnv`: --nproc-per-node was given (the contract even for one copy). */
export async function runCommand(command: string[], configPath: string | null, overrides: string[], rankEnv = false): Promise<number> {
  if (command.length === 0) throw new TrqatError('trqat run needs the command to start, e.g. trqat run -- python train.py', 2);
  const config = loadConfig(configPath, overrides);
  // The script owns stdout; the controller's lines go to stderr.
  const say = (line: string) => console.error(prefix(line, '[trqat] '));
  const toStderr = { write: (text: string) => process.stderr.write(text.endsWith('\n') ? `${prefix(text.slice(0, -1), '[trqat] ')}\n` : text) };
  const printer = new ProgressPrinter(toStderr, toStderr, eventFormatter(config.train.log_every, true));
  let children: readonly RunProcess[] = [];
  let signals = 0;
  /** The signal for the script that came before it was started (none, or a terminal's, reached it): sent once it is. */
  let pending: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (children.length === 0) pending = signals >= 3 ? 'SIGKILL' : signal;
    // A Ctrl-C in a terminal reaches the whole foreground process group, the script included:
    // forwarding it would interrupt the script twice. Signals sent to trqat alone are forwarded.
    const fromTerminal = signal === 'SIGINT' && process.stdin.isTTY === true;
    if (signals >= 3) {
      say('killing the script');
      for (const child of children) child.stop('SIGKILL');
    } else if (!fromTerminal) for (const child of children) child.stop(signal);
    if (signals === 1) say('waiting for the script to stop (Ctrl-C twice more to kill it)');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  try {
    const result = await runScript(config, command, {
      onEvent: (event: RunEvent) => {
        if (event.type === 'listening') say(`listening on ${event.endpoint}; starting: ${command.join(' ')}`);
        printer.print(event);
      },
      onSpawn: (spawned) => {
        children = spawned;
        if (pending) for (const child of children) child.stop(pending);
      },
      rankEnv,
    });
    if (result.error) {
      console.error(`trqat: ${result.error.message}\ntrqat: the run is marked failed: ${result.runDir}`);
    } else if (result.summary) {
      say(formatClientSummary(result.summary));
      if (result.exitCode !== 0) console.error(`trqat: the training script ended with exit status ${result.exitCode} after the run ended (${result.summary.status})`);
    }
    return result.exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  }
}

/** `trqat serve [--config F] [--set k=v]`: prints the endpoint and auth file, serves one client run. */
export async function serveCommand(configPath: string | null, overrides: string[]): Promise<number> {
  const config = loadConfig(configPath, overrides);
  const printer = new ProgressPrinter(process.stdout, process.stderr, eventFormatter(config.train.log_every, true));
  let stopNow: ((reason: string) => void) | null = null;
  const stop = stopOnSignals(
    {
      first: 'stopping: clients get "stop" with their next step (Ctrl-C again to stop at once)',
      second: 'stopping at once',
    },
    () => stopNow?.('stopped at once (a second Ctrl-C)'),
  );
  try {
    const handle = await serve(config, {
      signal: stop.signal,
      onEvent: (event) => {
        if (event.type === 'listening') {
          console.log(`trqat controller listening on ${event.endpoint}`);
          console.log(`run folder: ${event.runDir}`);
          console.log(`connect a training script with: TRQAT_AUTH_FILE=${event.authFile} python your_script.py`);
          return;
        }
        printer.print(event);
      },
    });
    stopNow = handle.stopNow;
    const summary = await handle.done;
    console.log(formatClientSummary(summary));
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
