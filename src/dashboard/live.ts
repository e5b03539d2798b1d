import { statSync } from 'node:fs';
import { join } from 'node:path';
import { dashboardSchema, type DashboardConfig } from '../config/schema.js';
import type { ResolvedConfig } from '../config/resolve.js';
import { TrqatError, WriteError } from '../errors.js';
import type { RunEvent } from '../run/record.js';
import { RUN_FILES, RunReader } from './reader.js';
import { REPORT_FILE, writeReport } from './report.js';
import { DashboardServer } from './server.js';

/** How long a run's end waits for an open page to fetch the final status (it polls every second). */
const PAGE_SETTLE_MS = 2500;

/** The dashboard settings of a config (a config.json from before they existed gets the defaults). */
export function dashboardSettings(config: ResolvedConfig): DashboardConfig {
  return dashboardSchema.parse((config as { dashboard?: unknown }).dashboard ?? {});
}

/**
 * A run's views while it runs: the live dashboard fed from the run's own events (the records it
 * writes to metrics.jsonl, as it writes them), and at the end the report, written into the run
 * folder. Nothing here can fail the run: problems become warnings. Only a report that cannot be
 * written (a full disk) is an error, after the run's own record is complete.
 */
export interface RunViews {
  /** The run's listener: feeds the dashboard, then calls the caller's. */
  onEvent: (event: RunEvent) => void;
  /** The run has ended: writes report.html (unless `report` is false), stops the dashboard. Returns the WriteError of a report that could not be written. */
  close(report?: boolean): Promise<WriteError | null>;
}

/** Starts the views of the run in `runDir`; `onEvent` is the caller's own listener. */
export async function openRunViews(runDir: string, config: ResolvedConfig, onEvent?: (event: RunEvent) => void): Promise<RunViews> {
  const settings = dashboardSettings(config);
  const tell = (event: RunEvent) => onEvent?.(event);
  const warn = (message: string) => tell({ type: 'warning', message });
  const feed = settings.enabled ? new LiveFeed(runDir, warn) : null;
  let server: DashboardServer | null = null;
  if (feed) {
    try {
      server = await DashboardServer.start({ host: settings.host, port: settings.port, title: runDir, runs: () => [feed.reader.data] });
      tell({ type: 'dashboard', url: server.url });
    } catch (error) {
      warn(`${(error as Error).message}; the run goes on without a dashboard`);
    }
  }
  return {
    onEvent: (event) => {
      if (server) feed!.event(event);
      onEvent?.(event);
    },
    close: async (report = true) => {
      if (server) {
        try {
          feed!.reader.refreshMeta(); // run.json's final status, for an open page's last poll
        } catch {
          // a damaged run.json: the report below says so; the page keeps what it had
        }
        await server.settle(PAGE_SETTLE_MS);
        await server.close();
      }
      if (!settings.report || !report) return null;
      const path = join(runDir, REPORT_FILE);
      try {
        const reader = (server && (await feed!.finish())) || (await readRun(runDir));
        writeReport([reader.data], path);
        tell({ type: 'report', path });
      } catch (error) {
        if (error instanceof WriteError) return error;
        warn(`cannot write the report ${path}: ${(error as Error).message}`);
      }
      return null;
    },
  };
}

/** Starts a run with its views: the dashboard from the start; the report, and the dashboard closed, before `done` settles. */
export async function withRunViews<O extends { onEvent?: (event: RunEvent) => void }, H extends { done: Promise<unknown> }>(
  runDir: string,
  config: ResolvedConfig,
  options: O,
  start: (options: O) => Promise<H>,
): Promise<H> {
  const views = await openRunViews(runDir, config, options.onEvent);
  let handle: H;
  try {
    handle = await start({ ...options, onEvent: views.onEvent });
  } catch (error) {
    await views.close(false); // nothing ran: no report
    throw error;
  }
  const done = handle.done.then(
    async (value) => {
      const failed = await views.close();
      if (failed) throw new TrqatError(`the run ended and its record is complete, but ${failed.message}`);
      return value;
    },
    async (error: unknown) => {
      const failed = await views.close();
      if (failed) options.onEvent?.({ type: 'warning', message: failed.message });
      throw error;
    },
  );
  done.catch(() => undefined); // callers that never await done must not see an unhandled rejection
  return { ...handle, done };
}

async function readRun(runDir: string): Promise<RunReader> {
  const reader = new RunReader(runDir);
  await reader.refresh();
  return reader;
}

/**
 * The live run's record, built from its events: the step and eval records it writes, its progress
 * reports, and its other files (run.json, config.json, summary.json) re-read when they change. A
 * resumed run first loads the log it continues (up to where the resume truncated it).
 */
class LiveFeed {
  readonly reader: RunReader;
  /** Records that arrive while the log of a resumed run loads; applied after it. */
  private queue: RunEvent[] | null = null;
  private loading: Promise<void> = Promise.resolve();
  private broken = false;

  constructor(
    runDir: string,
    private readonly warn: (message: string) => void,
  ) {
    this.reader = new RunReader(runDir);
  }

  event(event: RunEvent): void {
    if (this.broken) return;
    try {
      if (this.queue && (event.type === 'step' || event.type === 'eval')) this.queue.push(event);
      else this.apply(event);
    } catch (error) {
      this.broken = true; // a dashboard that cannot follow stops updating; the run goes on
      this.warn(`the dashboard stopped updating: ${(error as Error).message}`);
    }
  }

  private apply(event: RunEvent): void {
    const data = this.reader.data;
    switch (event.type) {
      case 'started':
        this.reader.refreshMeta();
        if (event.startStep > 0) this.loadResumed();
        break;
      case 'step':
      case 'eval':
        data.add(event.record);
        if (event.type === 'eval') this.reader.refreshMeta();
        break;
      case 'progress':
        data.setActivity({ phase: event.phase, done: event.done, total: event.total });
        break;
      case 'checkpoint':
      case 'rank':
      case 'rank-left':
        this.reader.refreshMeta();
        break;
    }
  }

  /** The metrics written before this session, as the resume left them (read before this session appends). */
  private loadResumed(): void {
    let size = 0;
    try {
      size = statSync(join(this.reader.data.dir, RUN_FILES.metrics)).size;
    } catch {
      return;
    }
    this.queue = [];
    this.loading = this.reader
      .refresh(size)
      .catch((error: unknown) => this.warn(`the dashboard cannot read the earlier metrics: ${(error as Error).message}`))
      .finally(() => {
        const queued = this.queue ?? [];
        this.queue = null;
        for (const event of queued) this.event(event);
      });
  }

  /** The run has ended: the record complete and the files re-read, or null when the feed broke. */
  async finish(): Promise<RunReader | null> {
    await this.loading;
    if (this.broken) return null;
    this.reader.refreshMeta();
    return this.reader;
  }
}
