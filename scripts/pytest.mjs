// Runs the Python test suite with the project's interpreter (the one the controller would spawn).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const python = process.env.TRQAT_PYTHON ?? (existsSync('.venv/bin/python') ? '.venv/bin/python' : 'python3');
const result = spawnSync(python, ['-m', 'pytest', 'python/tests', '-q', ...process.argv.slice(2)], { stdio: 'inherit' });
if (result.error) {
  console.error(`cannot run ${python}: ${result.error.message} (run "bash scripts/setup.sh" first)`);
  process.exit(1);
}
process.exit(result.status ?? 1);
