import { rmSync } from 'node:fs';
import { Router } from 'zeromq';
import { ConfigError } from '../errors.js';
import {
  decodeWorkerMessage,
  encode,
  MAX_MESSAGE_BYTES,
  ProtocolError,
  VersionMismatchError,
  type ControllerBodies,
  type ControllerMessageType,
  type WorkerMessage,
} from './protocol.js';

export interface ServerEvents {
  /** A valid message (heartbeats included: the session table acknowledges those of known peers). */
  message(message: WorkerMessage, routingId: Buffer): void;
  /** A frame that was refused; it has already been answered with an error or a reject. */
  refused(error: ProtocolError): void;
}

/** Bounds on the sockets' queues: a stuck peer cannot make the controller buffer without limit. */
const HIGH_WATER_MARK = 1000;

/**
 * The controller's ROUTER socket. Workers connect DEALER sockets; every frame is validated,
 * bad frames are answered and dropped, never thrown.
 */
export class BridgeServer {
  private sendChain: Promise<void> = Promise.resolve();
  private seq = 0;
  private closing = false;
  private closed = false;

  private constructor(
    private readonly socket: Router,
    readonly endpoint: string,
    private readonly events: ServerEvents,
  ) {
    void this.receiveLoop();
  }

  /**
   * Binds `endpoint` ("tcp://127.0.0.1:*" picks a free port); `endpoint` on the result is the real
   * address. With `curveSecretKey` the socket is a CURVE server: peers need its public key.
   */
  static async bind(endpoint: string, events: ServerEvents, curveSecretKey: string | null = null): Promise<BridgeServer> {
    const socket = new Router({
      // Long enough for a last bye/reject to leave before close; never blocks a healthy exit.
      linger: 500,
      maxMessageSize: MAX_MESSAGE_BYTES,
      receiveHighWaterMark: HIGH_WATER_MARK,
      sendHighWaterMark: HIGH_WATER_MARK,
      ...(curveSecretKey ? { curveServer: true, curveSecretKey } : {}),
    });
    try {
      await socket.bind(endpoint);
    } catch (error) {
      socket.close();
      throw new ConfigError(`cannot listen on bridge.endpoint ${endpoint}: ${(error as Error).message} (use "tcp://127.0.0.1:*" for a free port)`);
    }
    return new BridgeServer(socket, socket.lastEndpoint ?? endpoint, events);
  }

  /** Sends are chained: a zeromq socket allows one send in flight at a time. */
  send<T extends ControllerMessageType>(routingId: Buffer, type: T, sid: string, body: ControllerBodies[T]): Promise<void> {
    const frame = encode(type, sid, this.seq++, body);
    const sent = this.sendChain.then(() => (this.closed ? undefined : this.socket.send([routingId, frame])));
    this.sendChain = sent.catch(() => undefined);
    return sent;
  }

  /** Lets the replies already queued go out (a run's last bye above all), then closes the socket. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.sendChain;
    this.closed = true;
    this.socket.close();
    // ZeroMQ leaves an ipc:// endpoint's socket file behind; the run that bound it removes it.
    const path = /^ipc:\/\/([^@].*)$/.exec(this.endpoint)?.[1];
    if (path) rmSync(path, { force: true });
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        this.handle(frames);
      }
    } catch (error) {
      // Closing the socket ends the loop with an error; anything else is a bug worth seeing.
      if (!this.closed) this.events.refused(new ProtocolError(`receive loop stopped: ${(error as Error).message}`));
    }
  }

  private handle(frames: Buffer[]): void {
    const [routingId, frame, ...extra] = frames;
    if (!routingId || !frame || extra.length > 0) {
      this.refuse(routingId, new ProtocolError(`expected one frame per message, got ${frames.length - 1}`));
      return;
    }
    let message: WorkerMessage;
    try {
      message = decodeWorkerMessage(frame);
    } catch (error) {
      this.refuse(routingId, error instanceof ProtocolError ? error : new ProtocolError(String(error)));
      return;
    }
    this.events.message(message, routingId);
  }

  private refuse(routingId: Buffer | undefined, error: ProtocolError): void {
    if (routingId) {
      const sid = error.sid ?? 'unknown';
      const reply =
        error instanceof VersionMismatchError
          ? this.send(routingId, 'reject', sid, { reason: error.message })
          : this.send(routingId, 'error', sid, { message: error.message });
      void reply.catch(() => undefined);
    }
    this.events.refused(error);
  }
}
