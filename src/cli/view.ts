import { readRuns } from '../dashboard/reader.js';
import { DashboardServer } from '../dashboard/server.js';
import { dashboardSchema } from '../config/schema.js';
import { stopOnSignals } from './signals.js';

/**
 * `trqat view RUN_DIR... [--host H] [--port P]`: the dashboard of one or more run folders, overlaid
 * (e.g. TR against LR scheduling), following runs that are still going, until Ctrl-C. Loopback and
 * a free port by default; every request needs the token in the printed URL.
 */
export async function viewCommand(positionals: string[], values: { host?: string; port?: number }): Promise<number> {
  const defaults = dashboardSchema.parse({});
  const port = values.port ?? defaults.port;
  if (positionals.length > 0) console.error(`reading ${positionals.length === 1 ? positionals[0] : `${positionals.length} run folders`}`);
  const readers = await readRuns(positionals);
  const server = await DashboardServer.start({
    host: values.host ?? defaults.host,
    port,
    title: readers.map((reader) => reader.data.name).join(', '),
    runs: () => readers.map((reader) => reader.data),
    refresh: async () => {
      await Promise.all(readers.map((reader) => reader.refresh()));
    },
  });
  console.log(`dashboard ${server.url}`);
  console.log('Ctrl-C to stop');
  const stop = stopOnSignals({ first: 'stopping the dashboard', second: 'stopping' });
  try {
    await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
  } finally {
    stop.release();
    await server.close();
  }
  return 0;
}
