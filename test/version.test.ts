// One version number: python/pyproject.toml takes trqat.__version__ (setuptools' `attr:`), and
// package.json must hold the same.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pythonPath, resolvePython } from '../src/bridge/launcher.js';
import { PACKAGE_ROOT } from '../src/paths.js';

describe('the version number', () => {
  it('package.json holds trqat.__version__, which pyproject.toml reads', () => {
    const npm = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const python = execFileSync(resolvePython(null), ['-c', 'import trqat; print(trqat.__version__)'], {
      env: { ...process.env, PYTHONPATH: pythonPath() },
      encoding: 'utf8',
    }).trim();
    expect(python, 'set the same version in package.json and python/trqat/__init__.py').toBe(npm);
    const pyproject = readFileSync(join(PACKAGE_ROOT, 'python', 'pyproject.toml'), 'utf8');
    expect(pyproject).toMatch(/^dynamic = \["version"\]$/m);
    expect(pyproject).toMatch(/^version = \{attr = "trqat.__version__"\}$/m);
    expect(pyproject).not.toMatch(/^version = "/m);
  });
});
