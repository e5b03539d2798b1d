// npm test: the controller built and type-checked at once (each tsc uses one core: together they
// take the time of one), then vitest and pytest side by side: the vitest suites keep two workers
// busy until their last long file, and pytest is one process that fills the core left then. pytest's
// output is held and printed after vitest's, so neither interleaves.
// Arguments are vitest's (npm test -- test/e2e/run.test.ts); pytest runs only without them.
import { execa } from 'execa';

const vitestArgs = process.argv.slice(2);
const inherit = (file, args) => execa(file, args, { stdio: 'inherit', reject: false });

const built = await Promise.all([inherit('npm', ['run', '--silent', 'build']), inherit('npm', ['run', '--silent', 'typecheck'])]);
const failedBuild = built.find((result) => result.exitCode !== 0);
if (failedBuild) process.exit(failedBuild.exitCode ?? 1);

const pytest = vitestArgs.length === 0 ? execa(process.execPath, ['scripts/pytest.mjs', ...(process.stdout.isTTY ? ['--color=yes'] : [])], { all: true, reject: false }) : null;
const vitest = await inherit('npx', ['vitest', 'run', ...vitestArgs]);
const python = pytest ? await pytest : null;
if (python) process.stdout.write(`\n== pytest (python/tests), run beside vitest\n${python.all}\n`);
const failed = [vitest, python].find((result) => result && result.exitCode !== 0);
process.exit(failed ? (failed.exitCode ?? 1) : 0);
