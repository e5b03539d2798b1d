// vitest globalSetup: one fork server for the whole run (suiteForkServer), so the ~100 managed workers
// the e2e tests start do not each import torch (~2 s of CPU apiece). Every test file inherits
// $TRQAT_FORKSERVER; test/e2e/forkserver.test.ts runs the same run without it too.
import { suiteForkServer, type ForkServer } from '../../src/bridge/forkserver.js';

let server: ForkServer | null = null;

export async function setup(): Promise<void> {
  server = await suiteForkServer();
  if (server) Object.assign(process.env, server.env);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
