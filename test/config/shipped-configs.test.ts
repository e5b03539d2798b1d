import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

const dir = join(PACKAGE_ROOT, 'configs');
const files = readdirSync(dir).filter((name) => name.endsWith('.yaml'));

describe('shipped configs', () => {
  it.each(files)('%s validates and says how to run it', (file) => {
    const path = join(dir, file);
    const config = loadConfig(path, ['data.root=/data']);
    expect(config.name).toBe(file.replace(/\.yaml$/, ''));
    expect(readFileSync(path, 'utf8')).toMatch(new RegExp(`npx trqat train configs/${file.replace('.', '\\.')}`));
  });

  it('the Fashion-MNIST config is the built-in default job', () => {
    const shipped = loadConfig(join(dir, 'fashion-mnist-resnet20-w2a2.yaml'));
    const builtIn = loadConfig(null);
    expect({ ...shipped, name: builtIn.name }).toEqual(builtIn);
  });
});
