// Sweeps: the plan (pure), bad sweep files, and end to end with the real worker on tiny synthetic
// runs: a sweep equals its runs started one by one, a killed sweep continues, --only makes the same runs.
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { stringify as toYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { stat } from '../../src/dashboard/compare.js';
import { ConfigError } from '../../src/errors.js';
import { train } from '../../src/entry/train.js';
import { gpuSlots, SlotPool } from '../../src/sweep/gpus.js';
import { draw } from '../../src/sweep/plan.js';
import { sweep, sweepPlan } from '../../src/sweep/sweep.js';
import type { SweepState } from '../../src/sweep/state.js';
import { SweepTable } from '../../src/cli/sweep.js';
import type { PlannedRun } from '../../src/sweep/plan.js';
import type { SweepEvent } from '../../src/sweep/sweep.js';
import { CLI, readRun } from '../support/helpers.js';

/** A few-second run on synthetic data, as a config mapping (the sweep file's `config:`). */
const TINY = {
  name: 'tiny',
  data: { name: 'synthetic', synthetic: { train_size: 128, test_size: 64, image_size: 12 }, batch_size: 32, eval_batch_size: 64 },
  train: { steps: 8, eval_every: 4, log_every: 1 },
  worker: { device: 'cpu', threads: 1, heartbeat_interval_ms: 200, heartbeat_timeout_ms: 5000 },
  tr: { momentum: 0.5 },
};

function sweepFile(spec: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'trqat-sweep-'));
  const file = join(dir, 'sweep.yaml');
  writeFileSync(file, toYaml({ out: join(dir, 'out'), ...spec }));
  return file;
}

/** What must agree between two runs of the same setting: every step's numbers and every evaluation. */
function numbers(runDir: string) {
  const { steps, evals } = readRun(runDir);
  return { steps: steps.map((s) => [s.step, s.k, s.K, s.R, s.U, s.counts, s.loss]), evals: evals.map((e) => [e.step, e.top1, e.loss]) };
}

describe('the plan', () => {
  it('a grid with seeds: every combination, last key fastest, seeds innermost, names from the setting', () => {
    const plan = sweepPlan(sweepFile({ config: TINY, grid: { 'tr.lambda': [0.01, 0.02], 'optimizer.name': ['sgd', 'adam'] }, seeds: 2 }));
    expect(plan.runs.map((run) => run.name)).toEqual([
      'tiny-lambda0.01-namesgd-s0',
      'tiny-lambda0.01-namesgd-s1',
      'tiny-lambda0.01-nameadam-s0',
      'tiny-lambda0.01-nameadam-s1',
      'tiny-lambda0.02-namesgd-s0',
      'tiny-lambda0.02-namesgd-s1',
      'tiny-lambda0.02-nameadam-s0',
      'tiny-lambda0.02-nameadam-s1',
    ]);
    expect(plan.runs[3]!.sets).toEqual(['tr.lambda=0.01', 'optimizer.name="adam"', 'seed=1']);
    expect(plan.runs[3]!.group).toBe('tr.lambda=0.01 optimizer.name=adam');
    // The configs are the resolved ones, in the sweep's folder.
    expect(plan.runs[3]!.config).toMatchObject({ seed: 1, name: 'tiny-lambda0.01-nameadam-s1', optimizer: { name: 'adam' }, tr: { lambda: 0.01 }, dashboard: { enabled: false } });
    expect(plan.runs[3]!.config.out_dir).toBe(join(plan.dir, 'runs'));
  });

  it('random search: seeded, within the ranges, the same plan every time; keys that share a name are spelt out', () => {
    const spec = { config: TINY, random: { trials: 6, seed: 7, 'tr.talr.eta': { min: 0.1, max: 10, log: true }, 'train.steps': { min: 4, max: 9, integer: true }, 'data.name': ['synthetic'], 'model.name': ['resnet20'] } };
    const a = sweepPlan(sweepFile(spec));
    const b = sweepPlan(sweepFile(spec));
    expect(a.runs.map((run) => [run.name, run.settings])).toEqual(b.runs.map((run) => [run.name, run.settings]));
    expect(sweepPlan(sweepFile({ ...spec, random: { ...spec.random, seed: 8 } })).runs.map((run) => run.name)).not.toEqual(a.runs.map((run) => run.name));
    expect(a.runs).toHaveLength(6);
    for (const run of a.runs) {
      const eta = run.settings['tr.talr.eta'] as number;
      expect(eta).toBeGreaterThanOrEqual(0.1);
      expect(eta).toBeLessThanOrEqual(10);
      expect(Number(eta.toPrecision(4))).toBe(eta); // 4 significant digits: the name states the value
      expect(Number.isInteger(run.settings['train.steps'])).toBe(true);
      expect(run.config.train.steps).toBe(run.settings['train.steps']);
      expect(run.name).toMatch(/^tiny-eta[\d.]+-steps\d-data.namesynthetic-model.nameresnet20-s0$/);
    }
    // Log-uniform: u = 0.5 gives the geometric mean; integer ranges round and stay within max.
    expect(draw({ min: 0.1, max: 10, log: true, integer: false }, 0.5)).toBeCloseTo(1, 12);
    expect(draw({ min: 1, max: 4, log: false, integer: true }, 0.999)).toBe(4);
  });

  it('--plan prints one line per run (for a SLURM array) and runs nothing', async () => {
    const file = sweepFile({ config: TINY, grid: { 'tr.lambda': [0.01, 0.02] }, seeds: [3, 5] });
    const result = await execa('node', [CLI, 'sweep', file, '--plan'], { reject: false });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout.split('\n')).toEqual([
      '0\ttiny-lambda0.01-s3\t--set tr.lambda=0.01 --set seed=3',
      '1\ttiny-lambda0.01-s5\t--set tr.lambda=0.01 --set seed=5',
      '2\ttiny-lambda0.02-s3\t--set tr.lambda=0.02 --set seed=3',
      '3\ttiny-lambda0.02-s5\t--set tr.lambda=0.02 --set seed=5',
    ]);
    expect(result.stderr).toMatch(/sbatch --array=0-3 .* --only \$SLURM_ARRAY_TASK_ID/);
    expect(existsSync(join(file, '..', 'out'))).toBe(false);
  });
});

describe('bad sweep files', () => {
  async function usageError(args: string[]): Promise<string> {
    const result = await execa('node', [CLI, 'sweep', ...args], { reject: false });
    expect(result.exitCode, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/^trqat: /);
    expect(result.stderr).not.toMatch(/\n\s+at |Error:/);
    return result.stderr;
  }

  it('through the CLI: exit 2, one message naming what is wrong, nothing created', async () => {
    expect(await usageError(['nope.yaml'])).toMatch(/sweep file nope\.yaml does not exist/);
    const typo = sweepFile({ config: TINY, grid: { 'tr.lamda': [0.01] } });
    expect(await usageError([typo])).toMatch(/sweep run 0 [^]*tr\.lamda: unknown setting; did you mean tr\.lambda\?/);
    expect(existsSync(join(typo, '..', 'out'))).toBe(false);
    expect(await usageError([sweepFile({ config: TINY, grid: { 'tr.lambda': 0.01 }, concurency: 2 })])).toMatch(
      /invalid sweep file .*\n {2}- grid\.tr\.lambda: .*\n {2}- concurency: unknown sweep setting \(allowed: base, config, grid, random, seeds, concurrency, gpus, ranks, out\)/,
    );
    expect(await usageError([sweepFile({ config: TINY }), '--only', '5'])).toMatch(/--only 5: the sweep has 1 runs, numbered 0 to 0/);
  });

  it('in the library: reserved keys, random without trials, a bad range, a missing base', () => {
    expect(() => sweepPlan(sweepFile({ grid: { seed: [1, 2] } }))).toThrow(/seed cannot be swept .*use seeds: N/);
    expect(() => sweepPlan(sweepFile({ random: { 'tr.lambda': { min: 0.1, max: 1 } } }))).toThrow(/random\.trials: random search needs trials: N/);
    expect(() => sweepPlan(sweepFile({ random: { trials: 2, 'tr.lambda': { min: 0, max: 1, log: true } } }))).toThrow(/random\.tr\.lambda: a log range needs min > 0/);
    expect(() => sweepPlan(sweepFile({ base: 'missing.yaml' }))).toThrow(ConfigError);
  });
});

describe('GPU slots (a mock GPU list: this machine has no GPU)', () => {
  it('one run per GPU, or disjoint sets of `ranks` GPUs; none when there is no GPU or gpus: none', () => {
    const fake = () => ['0', '1', '2', '3', '4'];
    expect(gpuSlots('auto', 1, fake)).toEqual([['0'], ['1'], ['2'], ['3'], ['4']]);
    expect(gpuSlots('auto', 2, fake)).toEqual([
      ['0', '1'],
      ['2', '3'],
    ]);
    expect(gpuSlots([6, 7], 1, fake)).toEqual([['6'], ['7']]);
    expect(gpuSlots('none', 1, fake)).toBeNull();
    expect(gpuSlots('auto', 1, () => [])).toBeNull();
    expect(() => gpuSlots([0], 2, fake)).toThrow(/each run has 2 ranks but only 1 GPU is available \(0\)/);
    expect(() => gpuSlots([0, 0], 1, fake)).toThrow(/names a GPU twice/);
    const pool = new SlotPool(gpuSlots('auto', 2, fake)!);
    const a = pool.take();
    const b = pool.take();
    expect(() => pool.take()).toThrow(/no free GPU slot/);
    pool.give(a);
    expect(SlotPool.env(pool.take())).toEqual({ CUDA_VISIBLE_DEVICES: '0,1' });
    expect(SlotPool.env(b)).toEqual({ CUDA_VISIBLE_DEVICES: '2,3' });
  });
});

describe('the progress table', () => {
  const runs = [0, 1, 2].map((index) => ({ index, name: `tiny-s${index}` }) as PlannedRun);
  const events = [
    { type: 'plan', plan: { dir: '/sweeps/x', runs }, state: { runs: runs.map(() => ({ status: 'pending' })) }, concurrency: 2, slots: [['0'], ['1']] },
    { type: 'run-start', run: runs[0], how: 'new', gpus: ['0'] },
    { type: 'run-start', run: runs[1], how: 'resume', gpus: ['1'] },
    { type: 'run-event', run: runs[1], event: { type: 'eval', record: { top1: 41.5 } } },
    { type: 'run-end', run: runs[0], summary: { status: 'completed', final_top1: 50, elapsed_s: 3 }, error: null },
  ] as unknown as SweepEvent[];
  const capture = (isTTY: boolean) => {
    const out = { text: '', isTTY, write: (text: string) => (out.text += text) };
    const err = { text: '', write: (text: string) => (err.text += text) };
    const table = new SweepTable(out, err);
    events.forEach((event) => table.event(event));
    table.close();
    return out.text;
  };

  it('not on a terminal: plain lines, no control characters', () => {
    expect(capture(false)).toBe(
      [
        'sweep: 3 runs (0 already completed) into /sweeps/x, 2 at once, GPUs 0 1',
        '[1/3] tiny-s0 starting on GPU 0',
        '[2/3] tiny-s1 resuming from its checkpoint on GPU 1',
        '[1/3] tiny-s0 completed: top-1 50.00%, 3s',
        '',
      ].join('\n'),
    );
  });

  it('on a terminal: the running runs and the counts below the lines, redrawn in place and cleared at the end', () => {
    const text = capture(true);
    expect(text).toContain('  tiny-s1  step 0            top-1 41.50%\n  1/3 completed, 1 running, 1 to go, 0 failed');
    expect(text.endsWith('\x1b[2A\x1b[J')).toBe(true);
    // Without the table's redraws, the same lines as elsewhere.
    expect(text.replace(/ {2}[^\n]*\n/g, '').replace(/\x1b\[\d+A\x1b\[J/g, '')).toBe(capture(false));
  });
});

describe('a sweep of tiny runs (the real worker)', () => {
  it('4 runs, 2 at once, give the same results as the 4 runs started one by one; grouped by setting', async () => {
    const file = sweepFile({ config: TINY, grid: { 'tr.lambda': [0.01, 0.03] }, seeds: 2, concurrency: 2, gpus: 'none' });
    let most = 0;
    let running = 0;
    const result = await sweep(file, {
      onEvent: (event) => {
        if (event.type === 'run-start') most = Math.max(most, ++running);
        if (event.type === 'run-end') running--;
      },
    });
    expect(result.status).toBe('completed');
    expect(most).toBe(2);
    const state = JSON.parse(readFileSync(join(result.dir, 'sweep.json'), 'utf8')) as SweepState;
    expect(state.runs.map((run) => run.status)).toEqual(['completed', 'completed', 'completed', 'completed']);
    // The same runs, one by one, configured by hand (not through the plan).
    for (const [i, [lambda, seed]] of [[0.01, 0], [0.01, 1], [0.03, 0], [0.03, 1]].entries()) {
      const dir = mkdtempSync(join(tmpdir(), 'trqat-sweep-ref-'));
      const base = join(dir, 'base.yaml');
      writeFileSync(base, toYaml(TINY));
      const alone = await train(loadConfig(base, [`out_dir=${dir}`, 'dashboard.enabled=false', `tr.lambda=${lambda}`, `seed=${seed}`]));
      expect(numbers(state.runs[i]!.dir!), state.runs[i]!.name).toEqual(numbers(alone.run_dir));
    }
    // The grouped table: one group per setting, mean ± std of its two seeds.
    const { rows, groups } = result.summary!;
    expect(groups.map((group) => [group.group, group.runs])).toEqual([
      ['tr.lambda=0.01', 2],
      ['tr.lambda=0.03', 2],
    ]);
    const top1 = rows.map((row) => row.final_top1!);
    expect(groups[1]!.final_top1!.mean).toBeCloseTo((top1[2]! + top1[3]!) / 2, 12);
    expect(groups[1]!.final_top1!.std).toBeCloseTo(Math.abs(top1[2]! - top1[3]!) / Math.SQRT2, 12);
    expect(stat([1, null, 3])).toEqual({ mean: 2, std: Math.SQRT2, n: 2 });
    expect(readFileSync(result.summary!.report, 'utf8')).toContain(state.runs[3]!.name);
  }, 120_000);

  it('a sweep killed mid-way continues where it was: finished runs are not run again; --only makes the same run', async () => {
    // 48 steps: ~1 s between the second run's first checkpoint and its end, for the 20 ms poll to kill in
    const slow = { ...TINY, train: { steps: 48, eval_every: 24, checkpoint_every: 4, log_every: 1 } };
    const file = sweepFile({ config: slow, seeds: 2, gpus: 'none' });
    const runs = join(file, '..', 'out', 'runs');
    const child = execa('node', [CLI, 'sweep', file], { reject: false });
    // SIGKILL the CLI once the second run has a checkpoint (the first has completed by then).
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        const second = existsSync(runs) ? readdirSync(runs).find((name) => name.startsWith('tiny-s1-')) : undefined;
        if (second && existsSync(join(runs, second, 'checkpoints', 'latest.json'))) {
          clearInterval(poll);
          child.kill('SIGKILL');
          resolve();
        }
      }, 20);
    });
    await child;
    const [first, second] = readdirSync(runs).sort();
    expect(readRun(join(runs, first!)).info.status).toBe('completed');
    expect(readRun(join(runs, second!)).info.status).toBe('running'); // killed: nobody said otherwise
    const firstMetrics = statSync(join(runs, first!, 'metrics.jsonl')).mtimeMs;

    const again = await execa('node', [CLI, 'sweep', file], { reject: false });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/\[1\/2\] tiny-s0 already completed, not run again/);
    expect(again.stdout).toMatch(/\[2\/2\] tiny-s1 resuming from its checkpoint/);
    expect(again.stdout).toMatch(/by setting \(mean ± std over seeds\):\nsetting +runs +final top-1/);
    expect(readdirSync(runs).sort()).toEqual([first, second]);
    expect(statSync(join(runs, first!, 'metrics.jsonl')).mtimeMs).toBe(firstMetrics);
    expect(readRun(join(runs, second!)).steps.map((s) => s.step)).toEqual(Array.from({ length: 48 }, (_, t) => t));

    // A SLURM array task: --only 1 into another folder makes a run of the same name and the same numbers.
    const other = mkdtempSync(join(tmpdir(), 'trqat-sweep-only-'));
    const only = await execa('node', [CLI, 'sweep', file, '--only', '1', '--out', other], { reject: false });
    expect(only.exitCode, only.stderr).toBe(0);
    const [alone] = readdirSync(join(other, 'runs'));
    expect(alone!.replace(/-\d{8}-\d{6}$/, '')).toBe('tiny-s1');
    expect(existsSync(join(other, 'sweep.json'))).toBe(false); // array tasks share no file
    expect(numbers(join(other, 'runs', alone!))).toEqual(numbers(join(runs, second!)));
  }, 120_000);
});
