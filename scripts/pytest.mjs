// Runs the Python test suite with the project's interpreter: the one the controller would spawn
// (resolvePython, from the built controller; npm test builds it first). The workers the tests start
// are forked from one fork server (suiteForkServer in src/bridge/forkserver.ts), as in the vitest suite.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

const launcher = await import('../dist/bridge/launcher.js').catch(() => null);
const forkserver = await import('../dist/bridge/forkserver.js').catch(() => null);
if (!launcher || !forkserver) {
  console.error('scripts/pytest.mjs: dist/ is missing; build the controller first (npm run build)');
  process.exit(1);
}
const python = launcher.resolvePython(null);
const args = process.argv.slice(2);
// Given test files or node ids (node scripts/pytest.mjs python/tests/test_x.py), only those; else all.
const paths = args.some((arg) => existsSync(arg.split('::')[0])) ? [] : ['python/tests'];
const server = await forkserver.suiteForkServer((message) => console.error(`scripts/pytest.mjs: ${message}`));
const child = spawn(python, ['-m', 'pytest', ...paths, '-q', ...args], { stdio: 'inherit', env: { ...process.env, ...server?.env } });
const status = await new Promise((resolve) => {
  child.on('error', (error) => {
    console.error(`cannot run ${python}: ${error.message} (run "bash scripts/setup.sh" first)`);
    resolve(1);
  });
  child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
});
await server?.stop();
process.exit(status);
