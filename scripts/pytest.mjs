// Runs the Python test suite with the project's interpreter: the one the controller would spawn
// (resolvePython, from the built controller; npm test builds it first).
import { spawnSync } from 'node:child_process';

const launcher = await import('../dist/bridge/launcher.js').catch(() => null);
if (!launcher) {
  console.error('scripts/pytest.mjs: dist/ is missing; build the controller first (npm run build)');
  process.exit(1);
}
const python = launcher.resolvePython(null);
const result = spawnSync(python, ['-m', 'pytest', 'python/tests', '-q', ...process.argv.slice(2)], { stdio: 'inherit' });
if (result.error) {
  console.error(`cannot run ${python}: ${result.error.message} (run "bash scripts/setup.sh" first)`);
  process.exit(1);
}
process.exit(result.status ?? 1);
