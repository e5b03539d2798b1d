import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { gzipSync } from 'node:zlib';
import { TrqatError } from '../errors.js';
import { pageHtml } from './html.js';
import type { RunData } from './run-data.js';
import { DEFAULT_POINTS, viewPayload } from './view.js';

export interface DashboardOptions {
  host: string;
  port: number;
  title: string;
  /** The runs shown, read at every request. */
  runs: () => readonly RunData[];
  /** Called before a request is answered (view: read what the run folders gained), at most once a second. */
  refresh?: () => Promise<void>;
  /** The token every request must carry (`?token=`, in the printed URL); default: a new random one. */
  token?: string;
}

/** Responses larger than this are gzipped when the browser accepts it. */
const GZIP_MIN_BYTES = 1024;
const REFRESH_EVERY_MS = 1000;
/** A page that asked for no view this long after its poll interval is gone (closed, or never opened). */
const PAGE_GONE_MS = 5000;
/**
 * A view computed for a request is reused for this long by the same request: however many pages
 * poll, a live run's controller spends at most one downsampling per view and second.
 */
const VIEW_TTL_MS = 1000;
/** The page may run its inline scripts and styles and talk to this server, nothing else. */
const CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'";

/** Loopback addresses: the Host header a loopback dashboard requires (against DNS rebinding). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The dashboard's HTTP server: the page, and /api/view with the runs' data downsampled for it.
 *
 * Like Jupyter, every request must carry the dashboard's random token (`?token=...`, in the
 * printed URL; the page keeps it for its requests), compared in constant time, also on loopback:
 * every local user can reach a loopback port, and the page shows the run's whole config and
 * record. The token is made per dashboard and never written to the run folder. On loopback it
 * also answers only requests whose Host header names loopback (DNS rebinding). The page is
 * read-only: nothing it sends changes the run.
 */
export class DashboardServer {
  private lastRefresh = 0;
  private html: string | null = null;
  private readonly views = new Map<string, { at: number; version: string; json: string }>();
  /** When a view was last answered (a page is open while they keep coming). */
  private viewAnsweredAt = 0;

  private constructor(
    private readonly server: Server,
    private readonly options: DashboardOptions,
    private readonly token: string,
    readonly url: string,
  ) {}

  static async start(options: DashboardOptions): Promise<DashboardServer> {
    const token = options.token ?? randomBytes(18).toString('base64url');
    let dashboard: DashboardServer | null = null;
    const server = createServer((request, response) => {
      void dashboard!.handle(request, response).catch((error: unknown) => send(response, 500, 'text/plain', `dashboard error: ${(error as Error).message}`));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) =>
        reject(new TrqatError(`the dashboard cannot listen on ${options.host}:${options.port}: ${error.code ?? error.message} (set dashboard.port, or --dashboard off)`)),
      );
      server.listen(options.port, options.host, () => resolve());
    });
    const port = (server.address() as AddressInfo).port;
    const shown = options.host === '0.0.0.0' || options.host === '::' ? hostname() : options.host;
    const host = shown.includes(':') ? `[${shown}]` : shown;
    dashboard = new DashboardServer(server, options, token, `http://${host}:${port}/?token=${token}`);
    return dashboard;
  }

  /**
   * Waits (at most `ms`) until an open page has fetched the runs as they are now (a live run that
   * just ended: its final status), so the page can say how the run ended instead of finding its
   * server gone. Returns at once when no page has asked for a view in the last few seconds.
   */
  async settle(ms: number): Promise<void> {
    const since = Date.now();
    if (since - this.viewAnsweredAt > ms + PAGE_GONE_MS) return;
    this.views.clear();
    while (this.viewAnsweredAt < since && Date.now() - since < ms) await new Promise((resolve) => setTimeout(resolve, 25));
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://dashboard');
    if (!this.allowed(request, url)) {
      send(response, 403, 'text/plain', 'forbidden: open the URL the dashboard printed (it holds the token)');
      return;
    }
    if (request.method !== 'GET') {
      send(response, 405, 'text/plain', 'the dashboard only answers GET');
      return;
    }
    if (url.pathname === '/') {
      this.html ??= pageHtml({ title: this.options.title });
      send(response, 200, 'text/html; charset=utf-8', this.html, request);
    } else if (url.pathname === '/api/view') {
      const view = await this.view(url.searchParams);
      if (url.searchParams.get('since') === view.version) {
        response.writeHead(204, headers()).end();
        this.viewAnsweredAt = Date.now();
        return;
      }
      send(response, 200, 'application/json', view.json, request);
      this.viewAnsweredAt = Date.now();
    } else {
      send(response, 404, 'text/plain', 'not found');
    }
  }

  /** The view a query asks for (points, from, to, heatmaps), computed at most once per VIEW_TTL_MS. */
  private async view(query: URLSearchParams): Promise<{ version: string; json: string }> {
    const number = (name: string) => (query.has(name) ? Number(query.get(name)) : null);
    const key = ['points', 'from', 'to', 'heatmaps'].map((name) => query.get(name)).join('|');
    const cached = this.views.get(key);
    if (cached && Date.now() - cached.at < VIEW_TTL_MS) return cached;
    await this.refresh();
    const payload = viewPayload(this.options.runs(), { points: number('points') ?? DEFAULT_POINTS, from: number('from'), to: number('to'), heatmaps: query.get('heatmaps') !== '0' });
    const view = { at: Date.now(), version: payload.version, json: JSON.stringify(payload) };
    if (this.views.size > 32) this.views.clear(); // zooms make new keys; keep a handful
    this.views.set(key, view);
    return view;
  }

  private allowed(request: IncomingMessage, url: URL): boolean {
    if (isLoopback(this.options.host)) {
      const host = (request.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
      if (!isLoopback(host)) return false;
    }
    const given = url.searchParams.get('token') ?? '';
    const digest = (text: string) => createHash('sha256').update(text).digest();
    return timingSafeEqual(digest(given), digest(this.token));
  }

  private async refresh(): Promise<void> {
    if (!this.options.refresh || Date.now() - this.lastRefresh < REFRESH_EVERY_MS) return;
    this.lastRefresh = Date.now();
    await this.options.refresh();
  }
}

function headers(): Record<string, string> {
  return { 'Cache-Control': 'no-store', 'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer' };
}

function send(response: ServerResponse, status: number, type: string, body: string, request?: IncomingMessage): void {
  if (response.headersSent) return;
  const raw = Buffer.from(body);
  const gzip = request !== undefined && raw.length >= GZIP_MIN_BYTES && /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
  const content = gzip ? gzipSync(raw) : raw;
  response.writeHead(status, { ...headers(), 'Content-Type': type, 'Content-Length': String(content.length), ...(gzip ? { 'Content-Encoding': 'gzip' } : {}) });
  response.end(content);
}
