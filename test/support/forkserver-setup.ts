// vitest globalSetup: one fork server for the whole run (src/bridge/forkserver.ts), so the ~100
// managed workers the e2e tests start do not each import torch (~2 s of CPU apiece). Every test file
// inherits $TRQAT_FORKSERVER; test/e2e/forkserver.test.ts runs the same run without it too.
// TRQAT_TEST_FORKSERVER=0 runs the suite without one; a $TRQAT_FORKSERVER already set is used as is.
import { startForkServer, type ForkServer } from '../../src/bridge/forkserver.js';
import { FORKSERVER_ENV } from '../../src/bridge/launcher.js';

let server: ForkServer | null = null;

export async function setup(): Promise<void> {
  if (process.env[FORKSERVER_ENV] || process.env['TRQAT_TEST_FORKSERVER'] === '0') return;
  server = await startForkServer().catch((error: Error) => {
    console.warn(`running the suite without a fork server: ${error.message}`);
    return null;
  });
  if (server) Object.assign(process.env, server.env);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
