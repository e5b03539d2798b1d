import { TrqatError } from '../errors.js';
import type { ResolvedConfig } from '../config/resolve.js';
import { BridgeServer } from './server.js';
import {
  ProtocolError,
  VersionMismatchError,
  type ControllerBodies,
  type ControllerMessageType,
  type WorkerBody,
  type WorkerMessage,
  type WorkerMessageType,
} from './protocol.js';
import { KILL_GRACE_MS, WorkerProcess } from './worker-process.js';

/** How often liveness is checked against `heartbeat_timeout_ms`. */
const LIVENESS_CHECK_MS = 200;
/** A worker whose controller is silent this long exits; a few heartbeats' worth. */
const CONTROLLER_TIMEOUT_FACTOR = 10;
/** After `shutdown`, how long the worker gets to say bye and exit before it is terminated. */
const SHUTDOWN_TIMEOUT_MS = 10_000;

/**
 * Life of the link: starting (process spawned, no hello) -> handshaking (hello answered, waiting for
 * ready) -> idle <-> busy (a command in flight) -> stopping -> closed; any state -> failed.
 */
export type LinkState = 'starting' | 'handshaking' | 'idle' | 'busy' | 'stopping' | 'closed' | 'failed';

/** The worker died, hung, or reported an error: the message carries the tail of its stderr. */
export class WorkerFailure extends TrqatError {}

export interface LinkOptions {
  config: ResolvedConfig;
  /** Checkpoint folder the worker restores from, or null for a fresh start. */
  resume: string | null;
  logPath: string | null;
  /** Non-fatal problems (a refused frame from some other peer). */
  warn?: (message: string) => void;
  /** The worker's `progress` reports (loading data, evaluating); they answer nothing. */
  progress?: (progress: WorkerBody<'progress'>) => void;
}

interface Waiter {
  type: WorkerMessageType;
  resolve(message: WorkerMessage): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/** One managed worker: spawns it, does the handshake, watches its liveness, exchanges commands. */
export class WorkerLink {
  state: LinkState = 'starting';
  hello: WorkerBody<'hello'> | null = null;
  ready: WorkerBody<'ready'> | null = null;
  private sid: string | null = null;
  private routingId: Buffer | null = null;
  private lastSeen = Date.now();
  private readonly inbox: WorkerMessage[] = [];
  private waiter: Waiter | null = null;
  private failure: WorkerFailure | null = null;
  private activity = 'starting up';
  private readonly livenessTimer: NodeJS.Timeout;

  private constructor(
    private readonly options: LinkOptions,
    private readonly server: BridgeServer,
    readonly process: WorkerProcess,
  ) {
    this.livenessTimer = setInterval(() => this.checkLiveness(), LIVENESS_CHECK_MS);
    void process.exited.then((exit) => {
      if (this.state === 'stopping' || this.state === 'closed' || this.state === 'failed') return;
      if (exit.spawnError) {
        this.fail(`cannot start the worker: ${exit.spawnError} (set worker.python or TRQAT_PYTHON to a Python with trqat installed, or run "bash scripts/setup.sh")`);
        return;
      }
      const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
      this.fail(`the worker ${how} while ${this.activity}`);
    });
  }

  /** Spawns the worker and completes the handshake; resolves once the worker is ready to train. */
  static async start(options: LinkOptions): Promise<WorkerLink> {
    const { worker } = options.config;
    let link: WorkerLink | null = null;
    const server = await BridgeServer.bind(options.config.bridge.endpoint, {
      message: (message, routingId) => link?.onMessage(message, routingId),
      refused: (error) => link?.onRefused(error),
    });
    const process = WorkerProcess.spawn({
      python: worker.python,
      endpoint: server.endpoint,
      heartbeatMs: worker.heartbeat_interval_ms,
      controllerTimeoutMs: Math.max(worker.heartbeat_timeout_ms, CONTROLLER_TIMEOUT_FACTOR * worker.heartbeat_interval_ms),
      logPath: options.logPath,
    });
    link = new WorkerLink(options, server, process);
    try {
      link.hello = (await link.next('hello', worker.startup_timeout_ms)).body;
      link.state = 'handshaking';
      link.activity = 'building the model and loading data';
      await link.send('welcome', { config: options.config, resume: options.resume });
      link.ready = (await link.next('ready', worker.startup_timeout_ms)).body;
      link.state = 'idle';
      return link;
    } catch (error) {
      await link.close();
      throw error;
    }
  }

  get endpoint(): string {
    return this.server.endpoint;
  }

  /** Sends a command and returns its single answer of type `answer`; only one command at a time. */
  async command<T extends ControllerMessageType, A extends WorkerMessageType>(
    type: T,
    body: ControllerBodies[T],
    answer: A,
    activity: string,
  ): Promise<WorkerBody<A>> {
    await this.begin(type, body, activity);
    const reply = await this.next(answer, this.options.config.worker.command_timeout_ms);
    this.finish();
    return reply.body;
  }

  /** Starts a command whose answers the caller reads with `next` (training streams one message per step). */
  async begin<T extends ControllerMessageType>(type: T, body: ControllerBodies[T], activity: string): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.state !== 'idle') throw new Error(`cannot send "${type}" while the worker link is ${this.state}`);
    this.state = 'busy';
    this.activity = activity;
    await this.send(type, body);
  }

  /** Marks the command started by `begin` as answered in full. */
  finish(): void {
    if (this.state === 'busy') this.state = 'idle';
  }

  /** Updates what the worker is doing, for error messages ("while training step 37"). */
  describe(activity: string): void {
    this.activity = activity;
  }

  /** Sends a message without waiting for an answer (the per-step `lr`). */
  async send<T extends ControllerMessageType>(type: T, body: ControllerBodies[T]): Promise<void> {
    if (this.failure) throw this.failure;
    if (!this.routingId || !this.sid) throw new Error('no worker has connected yet');
    await this.server.send(this.routingId, type, this.sid, body);
  }

  /** The next message from the worker, which must be of `type`. */
  next<T extends WorkerMessageType>(type: T, timeoutMs: number): Promise<WorkerMessage<T>> {
    if (this.failure) return Promise.reject(this.failure);
    const queued = this.inbox.shift();
    if (queued) return this.accept(queued, type);
    return new Promise<WorkerMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(`no "${type}" from the worker within ${Math.round(timeoutMs / 1000)} s while ${this.activity}`);
      }, timeoutMs);
      this.waiter = { type, resolve, reject, timer };
    }).then((message) => this.accept(message, type));
  }

  /** Asks the worker to exit and waits for it; terminates it if it does not. */
  async shutdown(): Promise<void> {
    if (this.state === 'idle') {
      this.state = 'busy';
      this.activity = 'shutting down';
      try {
        await this.send('shutdown', {});
        await this.next('bye', SHUTDOWN_TIMEOUT_MS);
        this.state = 'stopping';
      } catch {
        // The worker is going away either way; close() makes sure of it.
      }
    }
    await this.close();
  }

  /**
   * Releases the worker and the socket. After a `bye` the worker gets time to exit by itself;
   * otherwise (a failed run) it is terminated at once, and killed if it ignores that.
   */
  async close(): Promise<void> {
    const saidBye = this.state === 'stopping';
    if (this.state !== 'failed') this.state = 'stopping';
    clearInterval(this.livenessTimer);
    const exited = saidBye ? await Promise.race([this.process.exited, delay(SHUTDOWN_TIMEOUT_MS).then(() => null)]) : this.process.exit;
    if (!exited) {
      this.process.terminate();
      const terminated = await Promise.race([this.process.exited, delay(KILL_GRACE_MS).then(() => null)]);
      if (!terminated) this.process.kill();
      await this.process.exited;
    }
    await this.server.close();
    if (this.state !== 'failed') this.state = 'closed';
  }

  private accept<T extends WorkerMessageType>(message: WorkerMessage, type: T): Promise<WorkerMessage<T>> {
    if (message.type === 'error') {
      const body = message.body as WorkerBody<'error'>;
      // The traceback says what the stderr tail would, without the repetition.
      this.fail(`the worker reported an error while ${this.activity}: ${body.message}${body.traceback ? `\n${body.traceback.trimEnd()}` : ''}`, !body.traceback);
      return Promise.reject(this.failure);
    }
    if (message.type !== type) {
      this.fail(`protocol violation: expected "${type}" from the worker while ${this.activity}, got "${message.type}"`);
      return Promise.reject(this.failure);
    }
    return Promise.resolve(message as WorkerMessage<T>);
  }

  private onMessage(message: WorkerMessage, routingId: Buffer): void {
    if (message.type === 'hello' && (message.body as WorkerBody<'hello'>).role === 'client') {
      const reason = 'this endpoint runs a managed training (trqat train), which has its own worker; connect clients to "trqat run" or "trqat serve"';
      void this.server.send(routingId, 'reject', message.sid, { reason }).catch(() => undefined);
      this.options.warn?.(`turned away a client (session ${message.sid}): ${reason}`);
      return;
    }
    if (this.sid === null && message.type === 'hello') {
      this.sid = message.sid;
      this.routingId = routingId;
    }
    if (message.sid !== this.sid) {
      // This run has one worker; another peer (a second rank, a stray process) is turned away.
      const reason = `this controller already serves worker session ${this.sid ?? '(none yet)'}; multi-rank runs are not supported yet`;
      void this.server.send(routingId, message.type === 'hello' ? 'reject' : 'error', message.sid, message.type === 'hello' ? { reason } : { message: reason }).catch(() => undefined);
      this.options.warn?.(`turned away a message from unknown worker session ${message.sid}`);
      return;
    }
    this.lastSeen = Date.now();
    if (message.type === 'heartbeat') return;
    if (message.type === 'progress') return this.options.progress?.(message.body as WorkerBody<'progress'>);
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = null;
      clearTimeout(waiter.timer);
      waiter.resolve(message);
    } else {
      this.inbox.push(message);
    }
  }

  private onRefused(error: ProtocolError): void {
    if (error instanceof VersionMismatchError && error.pid === this.process.pid) {
      this.fail(`the worker was refused at the handshake: ${error.message}`);
      return;
    }
    this.options.warn?.(`refused a message: ${error.message}`);
  }

  private checkLiveness(): void {
    if (this.sid === null || this.state === 'stopping' || this.state === 'closed' || this.state === 'failed') return;
    const silentMs = Date.now() - this.lastSeen;
    if (silentMs > this.options.config.worker.heartbeat_timeout_ms) {
      this.fail(`the worker stopped answering (no message or heartbeat for ${(silentMs / 1000).toFixed(1)} s) while ${this.activity}`);
      this.process.kill();
    }
  }

  private fail(reason: string, withStderr = true): void {
    if (this.failure) return;
    this.state = 'failed';
    clearInterval(this.livenessTimer);
    const tail = withStderr ? this.process.stderrTail() : '';
    const log = this.options.logPath ? ` (${this.options.logPath})` : '';
    this.failure = new WorkerFailure(tail ? `${reason}\n--- last lines of the worker's stderr${log} ---\n${tail}` : reason);
    const waiter = this.waiter;
    this.waiter = null;
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.reject(this.failure);
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
