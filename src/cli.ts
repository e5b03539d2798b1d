#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { applyOverrides, loadConfig, parseConfig } from './config/load.js';
import { resolveConfig, type ResolvedConfig } from './config/resolve.js';
import { TrqatError } from './errors.js';
import { PACKAGE_ROOT } from './paths.js';
import { formatEvent, formatSummary } from './cli/progress.js';
import { stopOnSignals } from './cli/signals.js';
import { resume, train, type RunOptions, type RunSummary } from './run/train.js';
import { runCommand, serveCommand } from './cli/client-run.js';
import { exportCommand } from './cli/export.js';

const USAGE = `usage:
  trqat train [config.yaml] [--set path=value ...]   start a run (no config: the built-in default,
                                                     TR-scheduled W2A2 ResNet-20 on Fashion-MNIST)
  trqat resume <run-dir> [--set worker.key=value ...] continue a run from its latest checkpoint
  trqat config [config.yaml] [--set path=value ...]  print the resolved config and exit
  trqat run [--config tr.yaml] [--set path=value ...] -- <command ...>
                                                     run your own training script (or torchrun ...)
                                                     with TR scheduling: serves the schedule to it
                                                     (TRQAT_ENDPOINT), records the run, exits with
                                                     the script's exit status
  trqat serve [--config tr.yaml] [--set path=value ...]
                                                     the same for a script started some other way:
                                                     prints the endpoint to set as TRQAT_ENDPOINT
  trqat export <run-dir> [--step N | --best] [--format trqat|onnx] [-o PATH]
                                                     write a checkpoint as a deployable low-bit model
                                                     and check it (trqat export --help)
  trqat --version | --help

Ctrl-C stops at the next step and writes a checkpoint (press twice to stop at once); under
trqat run it reaches the script, and trqat exits when the script does.
Config reference: README.md, "Config reference". Your own scripts: docs/plugin.md.`;

/** Settings a resume may change: where and how the worker runs, never the schedule. */
const RESUMABLE_PREFIXES = ['worker.', 'train.log_every', 'train.keep_checkpoints', 'train.keep_best', 'bridge.'];

async function main(argv: string[]): Promise<number> {
  // run/serve parse their own arguments: everything after "--" belongs to the user's command.
  if (argv[0] === 'run') return runCommand(argv.slice(1), USAGE);
  if (argv[0] === 'serve') return serveCommand(argv.slice(1), USAGE);
  if (argv[0] === 'export') return exportCommand(argv.slice(1));
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { set: { type: 'string', multiple: true, default: [] }, help: { type: 'boolean' }, version: { type: 'boolean' } },
  });
  if (values.version) {
    console.log(JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).version);
    return 0;
  }
  const [command, target, ...extra] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  if (extra.length > 0) throw new TrqatError(`unexpected arguments: ${extra.join(' ')}\n${USAGE}`, 2);
  const overrides = values.set ?? [];
  switch (command) {
    case 'config':
      process.stdout.write(toYaml(loadConfig(target ?? null, overrides)));
      return 0;
    case 'train': {
      const config = loadConfig(target ?? null, overrides);
      return report(await withSignals((options) => train(config, options)));
    }
    case 'resume': {
      if (!target) throw new TrqatError(`trqat resume needs the run folder, e.g. trqat resume runs/run-20261129-101500`, 2);
      for (const override of overrides) {
        if (!RESUMABLE_PREFIXES.some((prefix) => override.startsWith(prefix))) {
          throw new TrqatError(`--set ${override}: a resume can only change ${RESUMABLE_PREFIXES.join(', ')} (anything else would change the schedule)`, 2);
        }
      }
      const withOverrides = (saved: ResolvedConfig): ResolvedConfig =>
        overrides.length === 0 ? saved : resolveConfig(parseConfig(applyOverrides(saved, overrides), 'resumed config'));
      return report(await withSignals((options) => resume(target, { ...options, overrides: withOverrides })));
    }
    default:
      throw new TrqatError(`unknown command "${command}"\n${USAGE}`, 2);
  }
}

/** First Ctrl-C (or SIGTERM): stop at the next step with a checkpoint. Second: stop at once. */
async function withSignals(run: (options: RunOptions) => Promise<RunSummary>): Promise<RunSummary> {
  const stop = stopOnSignals({
    first: 'stopping after this step and writing a checkpoint (Ctrl-C again to stop at once)',
    second: 'stopping at once; the last checkpoint is kept',
  });
  let logEvery = 1; // the run's train.log_every arrives with its "started" event
  try {
    return await run({
      signal: stop.signal,
      onEvent: (event) => {
        if (event.type === 'started') logEvery = event.logEvery;
        const line = formatEvent(event, logEvery);
        if (line !== null) (event.type === 'warning' ? console.error : console.log)(line);
      },
    });
  } finally {
    stop.release();
  }
}

function report(summary: RunSummary): number {
  console.log(formatSummary(summary));
  return summary.status === 'completed' ? 0 : 130;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof TrqatError) {
      console.error(`trqat: ${error.message}`);
      process.exitCode = error.exitCode;
    } else if (error instanceof Error && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) {
      console.error(`trqat: ${error.message}\n${USAGE}`);
      process.exitCode = 2;
    } else {
      console.error(error);
      process.exitCode = 1;
    }
  },
);
