// Runs the Python test suite with the project's interpreter: the one the controller would spawn
// (resolvePython, from the built controller; npm test builds it first).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const launcher = await import('../dist/bridge/launcher.js').catch(() => null);
if (!launcher) {
  console.error('scripts/pytest.mjs: dist/ is missing; build the controller first (npm run build)');
  process.exit(1);
}
const python = launcher.resolvePython(null);
const args = process.argv.slice(2);
// Given test files or node ids (node scripts/pytest.mjs python/tests/test_x.py), only those; else all.
const paths = args.some((arg) => existsSync(arg.split('::')[0])) ? [] : ['python/tests'];
const result = spawnSync(python, ['-m', 'pytest', ...paths, '-q', ...args], { stdio: 'inherit' });
if (result.error) {
  console.error(`cannot run ${python}: ${result.error.message} (run "bash scripts/setup.sh" first)`);
  process.exit(1);
}
process.exit(result.status ?? 1);
