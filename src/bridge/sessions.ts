import { secretMatches, type Credentials } from './auth.js';
import { BridgeServer, type ServerEvents } from './server.js';
import {
  ProtocolError,
  type ControllerBodies,
  type ControllerMessageType,
  type WorkerBody,
  type WorkerMessage,
} from './protocol.js';

/** How often the expiry table is checked against the heartbeat timeout. */
const LIVENESS_CHECK_MS = 200;
/** Refused frames are reported at most once per this interval (a flood must not flood the log). */
const REFUSAL_REPORT_MS = 5000;

/**
 * Life of a session: welcomed (hello accepted) -> ready (plan sent; steps flow) -> closed (bye);
 * welcomed/ready -> lost (silent past the heartbeat timeout).
 */
export type SessionState = 'welcomed' | 'ready' | 'closed' | 'lost';

/** One process taking part in the run: a managed worker rank, or one rank of a user's script. */
export interface Session {
  readonly sid: string;
  readonly hello: WorkerBody<'hello'>;
  readonly rank: number;
  /** The socket that said hello; every reply goes there. */
  readonly routingId: Buffer;
  state: SessionState;
  ready: WorkerBody<'ready'> | null;
}

/** What the table needs of its socket: the bound BridgeServer (a fake one in unit tests). */
export type SessionWire = Pick<BridgeServer, 'endpoint' | 'send' | 'close'>;

/** A reply, or a refusal whose text goes back to the peer. */
export type Outcome<T> = { ok: T } | { refuse: string };

/** What the run does with sessions; the table does the wire, the handshake order, binding and liveness. */
export interface SessionHandler {
  /** A hello with the right secret: null welcomes it, a string rejects it with that reason. */
  hello(hello: WorkerBody<'hello'>): string | null;
  /** The welcome's body for a new session (the run config, the checkpoint to resume from). */
  welcome(session: Session): ControllerBodies['welcome'];
  /** A ready: the plan, or a reason to reject the session. */
  ready(session: Session, body: WorkerBody<'ready'>): Outcome<ControllerBodies['plan']>;
  /** Every later message of a ready session: step, evaluated, saved, bye, error. */
  message(session: Session, message: WorkerMessage): void;
  /** The session went silent past the heartbeat timeout. */
  lost(session: Session, reason: string): void;
  /** Frames refused by validation (the run may know the peer, e.g. its own worker with the wrong version). */
  refused(error: ProtocolError): void;
  /** Not fatal, worth a line. */
  warn(message: string): void;
}

/**
 * Every session of a run on one ROUTER socket: one expiry table for all peers (Paranoid Pirate),
 * one timer. A session is bound to the sockets that proved the run's secret (hello, then attach
 * from its heartbeat thread): knowing a session id or a pid gives another process nothing.
 */
export class SessionTable {
  private readonly sessions = new Map<string, Session>();
  /** Routing id (hex) of every bound socket -> its session id. */
  private readonly routes = new Map<string, string>();
  /** Session id -> the time it expires unless it is heard from. */
  private readonly expiry = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private refusals = { count: 0, last: '', reportedAt: 0 };
  private closed = false;
  /** What the socket hands the table: every valid message, every refused frame. */
  readonly events: ServerEvents = {
    message: (message, routingId) => this.onMessage(message, routingId),
    refused: (error) => this.onRefused(error),
  };

  /** A table over a socket already bound (`bind` makes both); the socket's events go to `events`. */
  constructor(
    private readonly server: SessionWire,
    private readonly credentials: Credentials,
    private readonly timeoutMs: number,
    private readonly handler: SessionHandler,
  ) {
    this.timer = setInterval(() => this.checkLiveness(), LIVENESS_CHECK_MS);
    this.timer.unref();
  }

  static async bind(endpoint: string, credentials: Credentials, timeoutMs: number, handler: SessionHandler): Promise<SessionTable> {
    let table: SessionTable | null = null;
    const server = await BridgeServer.bind(
      endpoint,
      {
        message: (message, routingId) => table?.events.message(message, routingId),
        refused: (error) => table?.events.refused(error),
      },
      credentials.curve?.secretKey ?? null,
    );
    table = new SessionTable(server, credentials, timeoutMs, handler);
    return table;
  }

  get endpoint(): string {
    return this.server.endpoint;
  }

  /** Every session seen so far, closed and lost ones included, in order of arrival. */
  all(): Session[] {
    return [...this.sessions.values()];
  }

  /** Sessions that have neither said bye nor been lost. */
  active(): Session[] {
    return this.all().filter((s) => s.state === 'welcomed' || s.state === 'ready');
  }

  send<T extends ControllerMessageType>(session: { routingId: Buffer; sid: string }, type: T, body: ControllerBodies[T]): void {
    if (this.closed) return;
    void this.server
      .send(session.routingId, type, session.sid, body)
      .catch((error: Error) => this.handler.warn(`cannot send "${type}" to session ${session.sid}: ${error.message}`));
  }

  /** Tells every socket of every open session that the run is over (workers exit, clients raise). */
  abort(reason: string): void {
    for (const [route, sid] of this.routes) {
      const session = this.sessions.get(sid);
      if (session && (session.state === 'welcomed' || session.state === 'ready')) {
        this.send({ routingId: Buffer.from(route, 'hex'), sid }, 'abort', { reason });
      }
    }
  }

  /** Closes every open session (their processes are being replaced): later messages from them are refused. */
  closeAll(): void {
    for (const session of this.active()) {
      session.state = 'closed';
      this.expiry.delete(session.sid);
    }
  }

  /** Stops the liveness checks and releases the socket (after queued replies are sent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.reportRefusals(true);
    await this.server.close();
  }

  private onMessage(message: WorkerMessage, routingId: Buffer): void {
    try {
      this.route(message, routingId);
    } catch (error) {
      // The run handles its own failures; this keeps a bug in handling one message from stopping the receive loop.
      this.handler.warn(`internal error while handling a "${message.type}" message: ${(error as Error).stack ?? String(error)}`);
    }
  }

  private route(message: WorkerMessage, routingId: Buffer): void {
    if (this.closed) return;
    const route = routingId.toString('hex');
    if (message.type === 'hello') return this.onHello(message as WorkerMessage<'hello'>, routingId);
    if (message.type === 'attach') return this.onAttach(message as WorkerMessage<'attach'>, routingId);
    const sid = this.routes.get(route);
    if (sid === undefined || sid !== message.sid) {
      // Unknown sockets and borrowed session ids alike: answered, counted, never acted on.
      this.refuse({ routingId, sid: message.sid }, `unknown session ${message.sid} on this socket: send "hello" (or "attach") with the run's secret first`, message.type !== 'heartbeat');
      return;
    }
    const session = this.sessions.get(sid)!;
    if (session.state === 'closed' || session.state === 'lost') {
      if (message.type !== 'heartbeat') this.send({ routingId, sid }, 'error', { message: `session ${sid} is ${session.state === 'closed' ? 'closed' : 'lost (it was silent too long)'}` });
      return;
    }
    this.expiry.set(sid, Date.now() + this.timeoutMs);
    if (message.type === 'heartbeat') {
      this.send({ routingId, sid }, 'heartbeat_ack', {});
      return;
    }
    if (message.type === 'ready') {
      if (session.state !== 'welcomed') {
        this.send(session, 'error', { message: 'protocol violation: "ready" was already sent' });
        return;
      }
      const body = message.body as WorkerBody<'ready'>;
      const outcome = this.handler.ready(session, body);
      if ('refuse' in outcome) {
        session.state = 'closed';
        this.send(session, 'reject', { reason: outcome.refuse });
        return;
      }
      session.ready = body;
      session.state = 'ready';
      this.send(session, 'plan', outcome.ok);
      return;
    }
    // Before its ready a session may only report progress (loading the data), an error, or leave.
    if (session.state !== 'ready' && message.type !== 'error' && message.type !== 'bye' && message.type !== 'progress') {
      this.send(session, 'error', { message: `protocol violation: "${message.type}" before "ready"` });
      return;
    }
    if (message.type === 'bye') {
      session.state = 'closed';
      this.expiry.delete(sid);
      this.send(session, 'bye', {});
    }
    this.handler.message(session, message);
  }

  private onHello(message: WorkerMessage<'hello'>, routingId: Buffer): void {
    const peer = { routingId, sid: message.sid };
    if (!secretMatches(this.credentials, message.body.secret)) {
      // Said plainly to the peer (it may be the user's script without TRQAT_SECRET), counted here.
      this.refuse(peer, 'wrong or missing run secret: start the process under the controller (trqat run), or set TRQAT_AUTH_FILE to the run\'s auth.json', true, 'reject');
      return;
    }
    if (this.sessions.has(message.sid) || this.routes.has(routingId.toString('hex'))) {
      this.send(peer, 'error', { message: `protocol violation: session ${message.sid} already said hello` });
      return;
    }
    const reason = this.handler.hello(message.body);
    if (reason !== null) {
      this.send(peer, 'reject', { reason });
      this.handler.warn(`refused rank ${message.body.rank} (pid ${message.body.pid} on ${message.body.hostname}): ${reason}`);
      return;
    }
    const session: Session = { sid: message.sid, hello: message.body, rank: message.body.rank, routingId, state: 'welcomed', ready: null };
    this.sessions.set(session.sid, session);
    this.routes.set(routingId.toString('hex'), session.sid);
    this.expiry.set(session.sid, Date.now() + this.timeoutMs);
    this.send(session, 'welcome', this.handler.welcome(session));
  }

  private onAttach(message: WorkerMessage<'attach'>, routingId: Buffer): void {
    const session = this.sessions.get(message.sid);
    if (!session || !secretMatches(this.credentials, message.body.secret) || this.routes.has(routingId.toString('hex'))) {
      this.refuse({ routingId, sid: message.sid }, 'cannot attach: unknown session, wrong secret, or a socket already in use', true);
      return;
    }
    this.routes.set(routingId.toString('hex'), session.sid);
    this.expiry.set(session.sid, Date.now() + this.timeoutMs);
    this.send({ routingId, sid: session.sid }, 'heartbeat_ack', {});
  }

  private refuse(peer: { routingId: Buffer; sid: string }, text: string, answer: boolean, type: 'error' | 'reject' = 'error'): void {
    if (answer) this.send(peer, type, type === 'reject' ? { reason: text } : { message: text });
    this.count(text);
  }

  private onRefused(error: ProtocolError): void {
    if (this.closed) return;
    this.count(error.message);
    this.handler.refused(error);
  }

  /** Refusals are counted and summarised at most every REFUSAL_REPORT_MS. */
  private count(text: string): void {
    this.refusals.count++;
    this.refusals.last = text;
    this.reportRefusals(false);
  }

  private reportRefusals(final: boolean): void {
    const { count, last, reportedAt } = this.refusals;
    const now = Date.now();
    if (count === 0 || (!final && now - reportedAt < REFUSAL_REPORT_MS)) return;
    this.handler.warn(count === 1 ? `refused a message: ${last}` : `refused ${count} messages (the last: ${last})`);
    this.refusals = { count: 0, last: '', reportedAt: now };
  }

  private checkLiveness(): void {
    const now = Date.now();
    for (const [sid, deadline] of this.expiry) {
      if (now <= deadline) continue;
      this.expiry.delete(sid);
      const session = this.sessions.get(sid)!;
      session.state = 'lost';
      this.handler.lost(session, `no message or heartbeat for ${((now - deadline + this.timeoutMs) / 1000).toFixed(1)} s`);
    }
    this.reportRefusals(false);
  }
}
