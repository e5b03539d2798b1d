// The config's documentation has one source, the zod schema: the README's table and
// trqat.schema.json are generated from it, and these tests fail when either drifts.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { configJsonSchema, configJsonSchemaText, configKeys, README_END, README_START, withConfigReference } from '../../src/config/docs.js';
import { loadConfig } from '../../src/config/load.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

const REGENERATE = 'regenerate with: npm run docs:config';
const read = (path: string) => readFileSync(join(PACKAGE_ROOT, path), 'utf8');

describe('the config documentation', () => {
  it('describes every key of the schema', () => {
    const undocumented = configKeys()
      .filter((key) => !key.description?.trim())
      .map((key) => key.path);
    expect(undocumented, 'give these keys a .describe() in src/config/schema.ts').toEqual([]);
  });

  it(`the README's config reference is the schema's (${REGENERATE})`, () => {
    const readme = read('README.md');
    expect(readme).toContain(README_START);
    expect(readme).toContain(README_END);
    expect(readme === withConfigReference(readme), `README.md's config reference differs from src/config/schema.ts; ${REGENERATE}`).toBe(true);
  });

  it(`trqat.schema.json is the schema's (${REGENERATE})`, () => {
    expect(read('trqat.schema.json') === configJsonSchemaText(), `trqat.schema.json differs from src/config/schema.ts; ${REGENERATE}`).toBe(true);
  });

  it('the table lists every key with its default', () => {
    const table = withConfigReference(`${README_START}\n${README_END}`);
    expect(table).toMatch(/\| `optimizer.momentum` \| `0.9` \| SGD momentum \|/);
    expect(table).toMatch(/\| `tr.lambda` \| `1e-3` \|/);
    expect(table).toMatch(/\| `worker.max_restarts` \| `3` \|/);
    expect(table).toMatch(/\| `tr.schedule.\*` \| as `lr_schedule` \|/);
    expect(table).not.toMatch(/`tr.schedule.name`/);
  });

  it('docs/worker-config.md names only keys the schema has', () => {
    const keys = configKeys();
    const known = new Set(keys.map((key) => key.path));
    const sections = new Set(keys.filter((key) => key.section).map((key) => key.path));
    const named = [...read('docs/worker-config.md').matchAll(/`([a-z_]+(?:\.[a-z_0-9]+)+)`/g)]
      .map((match) => match[1]!)
      .filter((path) => sections.has(path.split('.')[0]!) && !path.endsWith('.py'));
    expect(named.length).toBeGreaterThan(40);
    expect(named.filter((path) => !known.has(path))).toEqual([]);
  });
});

describe('trqat.schema.json, checked by a JSON Schema validator (ajv)', () => {
  const validate = new Ajv({ strict: false }).compile(configJsonSchema());
  const errors = () => (validate.errors ?? []).map((error) => `${error.instancePath} ${error.message}`).join('; ');
  const configs = readdirSync(join(PACKAGE_ROOT, 'configs')).filter((name) => name.endsWith('.yaml'));

  it.each(configs)('accepts the shipped %s', (file) => {
    expect(validate(parseYaml(read(join('configs', file)))), errors()).toBe(true);
  });

  it('accepts an empty config, the resolved default config and the released preset resolved', () => {
    expect(validate({}), errors()).toBe(true);
    expect(validate(JSON.parse(JSON.stringify(loadConfig(null)))), errors()).toBe(true);
    expect(validate(JSON.parse(JSON.stringify(loadConfig(null, ['tr.preset=released'])))), errors()).toBe(true);
  });

  it('refuses what the zod schema refuses: unknown keys, bad values, bad layer patterns', () => {
    for (const bad of [
      { optimiser: {} },
      { train: { epochs: 0 } },
      { quant: { weight_bits: 12 } },
      { quant: { layer_bits: { 'layer 4': 2 } } },
      { model: { name: 'resnet21' } },
      { tr: { talr: { rule: 'exponential' } } },
      { worker: { device: 'gpu' } },
      { optimizer: { betas: [0.9] } },
    ]) {
      expect(validate(bad), JSON.stringify(bad)).toBe(false);
      expect(() => loadConfig(null, Object.entries(bad).map(([key, value]) => `${key}=${JSON.stringify(value)}`)), JSON.stringify(bad)).toThrow();
    }
  });
});
