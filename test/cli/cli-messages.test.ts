// Messages that name the fix, through the built CLI: a missing config file, a mistyped setting, a
// folder that is not a run. Each is a usage error (exit 2) with one message and no stack.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { nearest } from '../../src/config/load.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { CLI } from '../support/helpers.js';

/** Runs the CLI in `cwd`; the result must be a usage error: exit 2, a "trqat:" message, no stack trace. */
async function usageError(args: string[], cwd = PACKAGE_ROOT): Promise<string> {
  const result = await execa('node', [CLI, ...args], { reject: false, cwd });
  expect(result.exitCode, result.stderr).toBe(2);
  expect(result.stderr).toMatch(/^trqat: /);
  expect(result.stderr).not.toMatch(/\n\s+at |ENOENT|Error:/);
  expect(result.stdout).toBe('');
  return result.stderr;
}

describe('a config file that does not exist', () => {
  it('is said so, with the shipped configs listed', async () => {
    const away = mkdtempSync(join(tmpdir(), 'trqat-cli-'));
    const message = await usageError(['train', 'nope.yaml'], away);
    expect(message).toMatch(/^trqat: config file nope\.yaml does not exist\n/);
    expect(message).toContain(`the shipped configs, in ${join(PACKAGE_ROOT, 'configs')}/: `);
    expect(message).toMatch(/fashion-mnist-resnet20-w2a2\.yaml, .*imagenet-resnet18-w2a2-sgdt\.yaml/);
  });

  it('a near miss of a shipped one is named', async () => {
    const message = await usageError(['config', 'configs/fashoin-mnist-resnet20-w2a2.yaml']);
    expect(message).toMatch(/does not exist; did you mean configs\/fashion-mnist-resnet20-w2a2\.yaml\?\nthe shipped configs, in configs\/: /);
  });
});

describe('an unknown setting', () => {
  it('names the nearest allowed key, and still lists the allowed ones', async () => {
    const message = await usageError(['config', '--set', 'train.stesp=3']);
    expect(message).toMatch(/train\.stesp: unknown setting; did you mean train\.steps\? \(allowed here: epochs, steps, /);
  });

  it('in a file, a misspelt section; on the command line, a key of another section', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trqat-cli-'));
    writeFileSync(join(dir, 'typo.yaml'), 'trian:\n  steps: 3\n');
    expect(await usageError(['config', join(dir, 'typo.yaml')])).toMatch(/trian: unknown setting; did you mean train\? \(allowed here: name, /);
    expect(await usageError(['config', '--set', 'lr=0.1', '--set', 'bogus_thing=1'])).toMatch(
      /lr, bogus_thing: unknown setting; did you mean optimizer\.lr for lr\? \(allowed here: /,
    );
  });

  it('nearest: a swap counts one, far candidates are no suggestion', () => {
    expect(nearest('stpes', ['epochs', 'steps'])).toBe('steps');
    expect(nearest('batchsize', ['batch_size', 'eval_batch_size'])).toBe('batch_size');
    expect(nearest('xyz', ['steps', 'lr'])).toBeNull();
  });
});

describe('trqat resume of a folder that is not a run', () => {
  it('is a usage error that says what a run folder holds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trqat-cli-'));
    const holds = /a run folder, made by trqat train or trqat run under out_dir, holds config\.json, run\.json, metrics\.jsonl and checkpoints\/$/;
    const empty = await usageError(['resume', dir]);
    expect(empty).toMatch(/is not a trqat run folder \(config\.json and run\.json are missing\)/);
    expect(empty).toMatch(holds);
    expect(await usageError(['resume', join(dir, 'nope')])).toMatch(/nope is not a trqat run folder \(it does not exist\)/);
    mkdirSync(join(dir, 'half'));
    writeFileSync(join(dir, 'half', 'config.json'), '{}');
    expect(await usageError(['resume', join(dir, 'half')])).toMatch(/half is not a trqat run folder \(run\.json is missing\); a run folder/);
  });
});
