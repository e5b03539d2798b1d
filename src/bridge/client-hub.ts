import type { ResolvedConfig } from '../config/resolve.js';
import { BridgeServer } from './server.js';
import {
  ProtocolError,
  VersionMismatchError,
  type ControllerBodies,
  type ControllerMessageType,
  type WorkerBody,
  type WorkerMessage,
} from './protocol.js';

/** How often sessions' liveness is checked against `worker.heartbeat_timeout_ms`. */
const LIVENESS_CHECK_MS = 200;

/**
 * Life of a client session: welcomed (hello answered) -> ready (plan sent, steps flow) -> closed
 * (bye, or refused at ready); welcomed/ready -> lost (no message or heartbeat within the timeout).
 */
export type SessionState = 'welcomed' | 'ready' | 'closed' | 'lost';

export interface ClientSession {
  readonly sid: string;
  /** Routing id of the session's main socket (the one that said hello); replies go there. */
  readonly routingId: Buffer;
  readonly hello: WorkerBody<'hello'>;
  ready: WorkerBody<'ready'> | null;
  state: SessionState;
  lastSeen: number;
}

/** A reply, or a refusal whose text goes back to the client. */
export type Outcome<T> = { ok: T } | { refuse: string };

/** What the run does with client sessions; the hub does the wire, the handshake order and liveness. */
export interface ClientHubHandler {
  /** A new session's hello: null welcomes it, a string rejects it with that reason. */
  hello(hello: WorkerBody<'hello'>, sid: string): string | null;
  /** The session is welcomed (after the welcome is sent). */
  welcomed?(session: ClientSession): void;
  /** A ready: the plan, or a reason to reject the session. */
  ready(session: ClientSession, body: WorkerBody<'ready'>): Outcome<ControllerBodies['plan']>;
  /** A step: its LRs, or an error (the client raises it). */
  step(session: ClientSession, body: WorkerBody<'step'>): Outcome<ControllerBodies['lr']>;
  evaluated(session: ClientSession, body: WorkerBody<'evaluated'>): void;
  /** Called after the bye has been answered. */
  bye(session: ClientSession, body: WorkerBody<'bye'>): void;
  /** The session went silent past the heartbeat timeout. */
  lost(session: ClientSession, reason: string): void;
  /** Refused frames, stray peers, client-reported errors: worth a line, not fatal. */
  warn(message: string): void;
}

/**
 * Accepts client sessions (docs/protocol.md, "Client sessions") on a BridgeServer: one per rank of
 * a user's training script. Every frame is validated by the server; the hub checks the order
 * (hello, ready, then steps), routes replies to the session's main socket, and watches liveness.
 */
export class ClientHub {
  private readonly sessions = new Map<string, ClientSession>();
  private readonly livenessTimer: NodeJS.Timeout;
  private closed = false;

  private constructor(
    private readonly server: BridgeServer,
    private readonly config: ResolvedConfig,
    private readonly handler: ClientHubHandler,
  ) {
    this.livenessTimer = setInterval(() => this.checkLiveness(), LIVENESS_CHECK_MS);
    this.livenessTimer.unref();
  }

  /** Binds `config.bridge.endpoint` and starts accepting sessions. */
  static async bind(config: ResolvedConfig, handler: ClientHubHandler): Promise<ClientHub> {
    let hub: ClientHub | null = null;
    const server = await BridgeServer.bind(config.bridge.endpoint, {
      message: (message, routingId) => hub?.onMessage(message, routingId),
      refused: (error) => hub?.onRefused(error),
    });
    hub = new ClientHub(server, config, handler);
    return hub;
  }

  get endpoint(): string {
    return this.server.endpoint;
  }

  /** Every session seen so far (closed and lost ones included), in order of arrival. */
  all(): ClientSession[] {
    return [...this.sessions.values()];
  }

  /** Sessions that have not said bye and are not lost. */
  active(): ClientSession[] {
    return this.all().filter((s) => s.state === 'welcomed' || s.state === 'ready');
  }

  /** Stops liveness checks and releases the socket (after queued replies are sent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.livenessTimer);
    await this.server.close();
  }

  private send<T extends ControllerMessageType>(session: { routingId: Buffer; sid: string }, type: T, body: ControllerBodies[T]): void {
    if (this.closed) return;
    void this.server
      .send(session.routingId, type, session.sid, body)
      .catch((error: Error) => this.handler.warn(`cannot send "${type}" to session ${session.sid}: ${error.message}`));
  }

  private onMessage(message: WorkerMessage, routingId: Buffer): void {
    if (this.closed) return;
    const peer = { routingId, sid: message.sid };
    if (message.type === 'hello') {
      this.onHello(message as WorkerMessage<'hello'>, routingId);
      return;
    }
    const session = this.sessions.get(message.sid);
    if (!session) {
      if (message.type !== 'heartbeat') this.send(peer, 'error', { message: `unknown session ${message.sid}: send "hello" first` });
      return;
    }
    if (session.state === 'closed' || session.state === 'lost') {
      if (message.type !== 'heartbeat') this.send(session, 'error', { message: `session ${session.sid} is ${session.state === 'closed' ? 'closed' : 'lost (it was silent too long)'}` });
      return;
    }
    session.lastSeen = Date.now();
    switch (message.type) {
      case 'heartbeat':
        return;
      case 'ready': {
        if (session.state !== 'welcomed') {
          this.send(session, 'error', { message: 'protocol violation: "ready" was already sent' });
          return;
        }
        const outcome = this.handler.ready(session, message.body as WorkerBody<'ready'>);
        if ('refuse' in outcome) {
          session.state = 'closed';
          this.send(session, 'reject', { reason: outcome.refuse });
          return;
        }
        session.ready = message.body as WorkerBody<'ready'>;
        session.state = 'ready';
        this.send(session, 'plan', outcome.ok);
        return;
      }
      case 'step':
      case 'evaluated': {
        if (session.state !== 'ready') {
          this.send(session, 'error', { message: `protocol violation: "${message.type}" before "ready"` });
          return;
        }
        if (message.type === 'evaluated') {
          this.handler.evaluated(session, message.body as WorkerBody<'evaluated'>);
          return;
        }
        const outcome = this.handler.step(session, message.body as WorkerBody<'step'>);
        if ('refuse' in outcome) this.send(session, 'error', { message: outcome.refuse });
        else this.send(session, 'lr', outcome.ok);
        return;
      }
      case 'bye':
        session.state = 'closed';
        this.send(session, 'bye', {});
        this.handler.bye(session, message.body as WorkerBody<'bye'>);
        return;
      case 'error': {
        const body = message.body as WorkerBody<'error'>;
        this.handler.warn(`client rank ${session.hello.rank} (pid ${session.hello.pid}) reported an error: ${body.message}`);
        return;
      }
      default:
        this.send(session, 'error', { message: `"${message.type}" is not a client message (client sessions send ready, step, evaluated, bye)` });
    }
  }

  private onHello(message: WorkerMessage<'hello'>, routingId: Buffer): void {
    const peer = { routingId, sid: message.sid };
    if (this.sessions.has(message.sid)) {
      this.send(peer, 'error', { message: `protocol violation: session ${message.sid} already said hello` });
      return;
    }
    const reason =
      (message.body.role ?? 'worker') !== 'client'
        ? 'this controller (trqat run / trqat serve) serves client sessions (hello.role "client", trqat.client.Client); managed workers are started by "trqat train"'
        : this.handler.hello(message.body, message.sid);
    if (reason !== null) {
      this.send(peer, 'reject', { reason });
      this.handler.warn(`refused a client (rank ${message.body.rank}, pid ${message.body.pid}): ${reason}`);
      return;
    }
    const session: ClientSession = { sid: message.sid, routingId, hello: message.body, ready: null, state: 'welcomed', lastSeen: Date.now() };
    this.sessions.set(message.sid, session);
    this.send(session, 'welcome', { config: this.config, resume: null });
    this.handler.welcomed?.(session);
  }

  private onRefused(error: ProtocolError): void {
    if (this.closed) return;
    const what = error instanceof VersionMismatchError ? 'refused a client at the handshake' : 'refused a message';
    this.handler.warn(`${what}: ${error.message}`);
  }

  private checkLiveness(): void {
    const now = Date.now();
    const limit = this.config.worker.heartbeat_timeout_ms;
    for (const session of this.active()) {
      const silent = now - session.lastSeen;
      if (silent > limit) {
        session.state = 'lost';
        this.handler.lost(session, `no message or heartbeat for ${(silent / 1000).toFixed(1)} s`);
      }
    }
  }
}
