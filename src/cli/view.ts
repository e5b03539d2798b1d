import { parseArgs } from 'node:util';
import { readRuns } from '../dashboard/reader.js';
import { DashboardServer } from '../dashboard/server.js';
import { dashboardSchema } from '../config/schema.js';
import { stopOnSignals } from './signals.js';

const USAGE = `usage: trqat view RUN_DIR... [--host HOST] [--port PORT]
  Serves the dashboard of one or more run folders, overlaid (e.g. TR against LR scheduling), and
  follows runs that are still going. Loopback and a free port by default; another --host requires
  the token in the printed URL. Ctrl-C stops it.`;

/** `trqat view RUN_DIR...`: the dashboard page for finished (or running) runs, until Ctrl-C. */
export async function viewCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { host: { type: 'string' }, port: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const defaults = dashboardSchema.parse({});
  const port = values.port === undefined ? defaults.port : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`trqat view: --port ${values.port} is not a port number (0..65535; 0 picks a free one)\n${USAGE}`);
    return 2;
  }
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
