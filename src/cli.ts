#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { RESUMABLE_PREFIXES } from './config/resume.js';
import { TrqatError } from './errors.js';
import { PACKAGE_ROOT } from './paths.js';
import { configCommand, resumeCommand, trainCommand } from './cli/train.js';
import { runCommand, serveCommand } from './cli/client-run.js';
import { compareCommand } from './cli/compare.js';
import { EXPORT_FORMATS, EXPORT_HELP, exportCommand, type ExportFormat } from './cli/export.js';
import { dashboardOverrides } from './cli/dashboard-flag.js';
import { reportCommand } from './cli/report.js';
import { sweepCommand, type SweepCommandOptions } from './cli/sweep.js';
import { viewCommand } from './cli/view.js';
import { LATE_FRACTION } from './dashboard/compare.js';

const collect = (value: string, previous: string[]) => [...previous, value];

/** The exit status of the command that ran (commander awaits actions but drops their results). */
let exitCode = 0;
const status =
  <A extends unknown[]>(command: (...args: A) => Promise<number>) =>
  async (...args: A): Promise<void> => {
    exitCode = await command(...args);
  };
const setOption = () => new Option('--set <path=value>', 'override a config value (a dotted path and a YAML value); repeatable').argParser(collect).default([]);
const dashboardOption = () =>
  new Option('--dashboard <where>', 'the live dashboard: off, on, HOST, HOST:PORT or :PORT (default: loopback, a free port)');

/** --set options, with --dashboard as the settings it stands for. */
function settings(options: { set: string[]; dashboard?: string }): string[] {
  return options.dashboard === undefined ? options.set : [...dashboardOverrides(options.dashboard), ...options.set];
}

function program(): Command {
  const cli = new Command('trqat')
    .description('Quantization-aware training with transition-rate scheduling')
    .version(JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).version, '--version')
    .showHelpAfterError('(trqat <command> --help for its usage)')
    .enablePositionalOptions()
    .exitOverride()
    .addHelpText(
      'after',
      '\nCtrl-C stops after the current step with a checkpoint (twice: at once). Config reference: README.md, "Config reference";\nyour own scripts: docs/plugin.md.',
    );
  cli
    .command('train')
    .description('start a run (no config: the built-in default, TR-scheduled W2A2 ResNet-20 on Fashion-MNIST)')
    .argument('[config]', 'a YAML or JSON config file')
    .addOption(setOption())
    .addOption(dashboardOption())
    .action(status((config: string | undefined, options: { set: string[]; dashboard?: string }) => trainCommand(config ?? null, settings(options))));
  cli
    .command('resume')
    .description(`continue a run from its latest checkpoint (only ${RESUMABLE_PREFIXES.join(', ')} may change)`)
    .argument('<run-dir>', 'the run folder, e.g. runs/run-20261129-101500')
    .addOption(setOption())
    .addOption(dashboardOption())
    .option('--allow-changed-plugins', "continue although a plug-in module's file changed since the checkpoint (README, \"Scheduling as code\")")
    .action(
      status((runDir: string, options: { set: string[]; dashboard?: string; allowChangedPlugins?: boolean }) =>
        resumeCommand(runDir, settings(options), options.allowChangedPlugins === true),
      ),
    );
  cli
    .command('config')
    .description('print the resolved config (every default filled in) and exit')
    .argument('[config]', 'a YAML or JSON config file')
    .addOption(setOption())
    .action(status((config: string | undefined, options: { set: string[] }) => configCommand(config ?? null, options.set)));
  cli
    .command('run')
    .description('run your own training script (or torchrun ...) with TR scheduling; exits with its exit status')
    .argument('<command...>', 'the command, after "--": trqat run -- python train.py')
    .option('-c, --config <file>', 'a YAML or JSON config file')
    .addOption(setOption())
    .option('--nproc-per-node <n>', 'start n copies with RANK, WORLD_SIZE, MASTER_ADDR, ... set (torchrun without torchrun)', (value) => positive(value, '--nproc-per-node'))
    .addOption(dashboardOption())
    .passThroughOptions()
    .action(
      status((command: string[], options: { config?: string; set: string[]; nprocPerNode?: number; dashboard?: string }) =>
        runCommand(command, options.config ?? null, withRanks(settings(options), options.nprocPerNode), options.nprocPerNode !== undefined),
      ),
    );
  cli
    .command('serve')
    .description('the same for a script started some other way: prints the endpoint and the auth file to give it')
    .argument('[config]', 'a YAML or JSON config file (or --config)')
    .option('-c, --config <file>', 'a YAML or JSON config file')
    .addOption(setOption())
    .addOption(dashboardOption())
    .action(status((config: string | undefined, options: { config?: string; set: string[]; dashboard?: string }) => serveCommand(options.config ?? config ?? null, settings(options))));
  cli
    .command('view')
    .description('serve the dashboard of finished (or running) runs, overlaid, until Ctrl-C')
    .argument('<run-dir...>', 'run folders')
    .option('--host <host>', 'where to listen (the printed URL carries the token every request needs)')
    .option('--port <port>', 'the port (0: a free one)', (value) => port(value))
    .action(status((runDirs: string[], options: { host?: string; port?: number }) => viewCommand(runDirs, options)));
  cli
    .command('report')
    .description('write one self-contained HTML report of the runs (plots, config, summary, comparison); it needs no network')
    .argument('<run-dir...>', 'run folders')
    .option('-o, --output <file>', 'where to write it (default: RUN_DIR/report.html for one run, ./report.html for several)')
    .action(status((runDirs: string[], options: { output?: string }) => reportCommand(runDirs, options)));
  cli
    .command('compare')
    .description(`one line per run: final and best top-1, tracking error, late k (mean over the last ${100 * LATE_FRACTION}% of the steps), steps, time`)
    .argument('<run-dir...>', 'run folders')
    .option('--csv', 'raw numbers as CSV')
    .action(status((runDirs: string[], options: { csv?: boolean }) => compareCommand(runDirs, options)));
  cli
    .command('sweep')
    .description('a grid or random search over config keys, N seeds each: resumable, then the comparison grouped by setting and one overlaid report')
    .argument('<file>', 'the sweep file (YAML), e.g. examples/sweep.yaml; docs/sweeps.md')
    .option('--out <dir>', 'the sweep folder (default: the file\'s out, else sweeps/<file name>)')
    .option('--plan', 'print the runs, one per line (index, name, --set overrides), and run nothing')
    .option('--only <i>', 'run only run i of the plan (a SLURM array task: --only $SLURM_ARRAY_TASK_ID)', (value) => whole(value, '--only'))
    .option('--summary', 'print the grouped comparison and write the overlaid report of the runs so far, and run nothing')
    .addHelpText('after', '\nRun the same command again to continue a stopped or killed sweep: completed runs are not run again.')
    .action(status((file: string, options: SweepCommandOptions) => sweepCommand(file, options)));
  cli
    .command('export')
    .description('write a checkpoint of a run as a deployable low-bit model (trqat file or ONNX), checked on its test set')
    .argument('<run-dir>', 'the run folder')
    .option('--step <n>', 'the checkpoint of step n (default: the latest)', (value) => whole(value, '--step'))
    .option('--best', "the best evaluation's checkpoint (train.keep_best)")
    .addOption(new Option('--format <format>', 'trqat: one file, bit-packed levels; onnx: the inference graph').choices(EXPORT_FORMATS).default('trqat'))
    .option('-o, --output <path>', 'where to write it (default RUN_DIR/export/model-step-NNNNNNN.<format>)')
    .option('--verify-samples <n>', 'test samples to check it on (0: no check)', (value) => whole(value, '--verify-samples'))
    .addHelpText('after', EXPORT_HELP)
    .action(
      status((runDir: string, options: { step?: number; best?: boolean; format: ExportFormat; output?: string; verifySamples?: number }) =>
        exportCommand(runDir, options),
      ),
    );
  return cli;
}

function positive(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new TrqatError(`${name} must be a positive integer, got "${value}"`, 2);
  return n;
}

function whole(value: string, name: string): number {
  if (!/^\d+$/.test(value)) throw new TrqatError(`${name} must be a whole number >= 0, got "${value}"`, 2);
  return Number(value);
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new TrqatError(`--port ${value} is not a port number (0..65535; 0 picks a free one)`, 2);
  return n;
}

function withRanks(overrides: string[], ranks: number | undefined): string[] {
  return ranks === undefined ? overrides : [...overrides, `worker.nproc_per_node=${ranks}`];
}

async function main(argv: string[]): Promise<number> {
  if (argv.length === 0) {
    program().outputHelp();
    return 2;
  }
  await program().parseAsync(argv, { from: 'user' });
  return exitCode;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof CommanderError) {
      // --help and --version end here too, with exit code 0; usage errors with 2.
      process.exitCode = error.exitCode === 0 ? 0 : 2;
    } else if (error instanceof TrqatError) {
      console.error(`trqat: ${error.message}`);
      process.exitCode = error.exitCode;
    } else {
      console.error(error);
      process.exitCode = 1;
    }
  },
);
