// SessionTable with a fake socket and fake ranks: no process, no ZeroMQ. What the table sends is
// recorded per socket; what the run is told is recorded by a fake handler; time is vitest's.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Credentials } from '../../src/bridge/auth.js';
import { PROTOCOL_VERSION, ProtocolError, type WorkerBody, type WorkerMessage, type WorkerMessageType } from '../../src/bridge/protocol.js';
import { SessionTable, type Outcome, type Session, type SessionHandler, type SessionWire } from '../../src/bridge/sessions.js';

const SECRET = 'the-run-secret';
const TIMEOUT_MS = 1000;

interface Sent {
  to: string;
  type: string;
  sid: string;
  body: Record<string, unknown>;
}

/** A socket that records every reply, keyed by the routing id it went to. */
class FakeWire implements SessionWire {
  readonly endpoint = 'ipc:///fake';
  readonly sent: Sent[] = [];
  closed = false;
  send(routingId: Buffer, type: string, sid: string, body: unknown): Promise<void> {
    this.sent.push({ to: routingId.toString(), type, sid, body: body as Record<string, unknown> });
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
  /** What `socket` has been sent so far, and forgets it. */
  take(socket: string): Sent[] {
    const mine = this.sent.filter((s) => s.to === socket);
    this.sent.splice(0, this.sent.length, ...this.sent.filter((s) => s.to !== socket));
    return mine;
  }
}

/** A run that admits every hello (unless `refuseHello`), plans every ready (unless `refuseReady`), and records what it hears. */
class FakeRun implements SessionHandler {
  refuseHello: string | null = null;
  refuseReady: string | null = null;
  readonly heard: string[] = [];
  readonly warnings: string[] = [];
  readonly lostRanks: { rank: number; reason: string }[] = [];
  hello(hello: WorkerBody<'hello'>): string | null {
    this.heard.push(`hello ${hello.rank}`);
    return this.refuseHello;
  }
  welcome(session: Session) {
    return { config: { rank: session.rank } as never, resume: null };
  }
  ready(session: Session): Outcome<{ total_steps: number; steps_per_epoch: number; start_step: number }> {
    this.heard.push(`ready ${session.rank}`);
    return this.refuseReady !== null ? { refuse: this.refuseReady } : { ok: { total_steps: 10, steps_per_epoch: 5, start_step: 0 } };
  }
  message(session: Session, message: WorkerMessage): void {
    this.heard.push(`${message.type} ${session.rank}`);
  }
  lost(session: Session, reason: string): void {
    this.lostRanks.push({ rank: session.rank, reason });
  }
  refused(error: ProtocolError): void {
    this.heard.push(`refused: ${error.message}`);
  }
  warn(message: string): void {
    this.warnings.push(message);
  }
}

const credentials: Credentials = { secret: SECRET, curve: null };

function helloBody(rank: number, secret = SECRET): WorkerBody<'hello'> {
  return {
    protocol: PROTOCOL_VERSION, role: 'worker', rank, world_size: 2, pid: 1000 + rank, hostname: 'fake', device: 'cpu',
    device_name: 'cpu', torch_version: '2', python_version: '3', trqat_version: '0.1.0', secret,
  };
}

const READY = { device: 'cpu', layers: [], params: { quantized: 0, other: 0 }, train_size: 10, test_size: 10, steps_per_epoch: 5, start_step: 0 } as WorkerBody<'ready'>;

function setup() {
  const wire = new FakeWire();
  const run = new FakeRun();
  const table = new SessionTable(wire, credentials, TIMEOUT_MS, run);
  let seq = 0;
  /** `socket` sends a message of session `sid`. */
  const say = <T extends WorkerMessageType>(socket: string, sid: string, type: T, body: WorkerBody<T>) =>
    table.events.message({ type, sid, seq: seq++, body } as WorkerMessage, Buffer.from(socket));
  /** A rank's main socket says hello and ready; its heartbeat socket attaches. */
  const join = (rank: number) => {
    const sid = `sid-${rank}`;
    say(`main-${rank}`, sid, 'hello', helloBody(rank));
    say(`main-${rank}`, sid, 'ready', READY);
    say(`beat-${rank}`, sid, 'attach', { secret: SECRET });
    wire.take(`main-${rank}`);
    wire.take(`beat-${rank}`);
    return sid;
  };
  return { wire, run, table, say, join };
}

describe('SessionTable with fake ranks', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('welcomes a hello with the secret, plans its ready, and passes later messages to the run', () => {
    const { wire, run, table, say } = setup();
    say('main-0', 'sid-0', 'hello', helloBody(0));
    expect(wire.take('main-0')).toEqual([{ to: 'main-0', type: 'welcome', sid: 'sid-0', body: { config: { rank: 0 }, resume: null } }]);
    expect(table.active().map((s) => [s.rank, s.state])).toEqual([[0, 'welcomed']]);
    say('main-0', 'sid-0', 'ready', READY);
    expect(wire.take('main-0').map((s) => s.type)).toEqual(['plan']);
    expect(table.active()[0]!.state).toBe('ready');
    expect(table.active()[0]!.ready).toEqual(READY);
    say('main-0', 'sid-0', 'step', { step: 0, counts: null, last: null });
    expect(run.heard).toEqual(['hello 0', 'ready 0', 'step 0']);
  });

  it('refuses a hello without the right secret, before the run hears of it, and counts it', () => {
    const { wire, run, table, say } = setup();
    say('main-0', 'sid-0', 'hello', helloBody(0, 'guessed'));
    const [reply] = wire.take('main-0');
    expect(reply!.type).toBe('reject');
    expect(reply!.body.reason).toMatch(/wrong or missing run secret/);
    expect(run.heard).toEqual([]);
    expect(table.all()).toEqual([]);
    expect(run.warnings).toEqual([expect.stringMatching(/^refused a message: wrong or missing run secret/)]);
  });

  it('rejects a hello the run refuses, with its reason, and keeps no session', () => {
    const { wire, run, table, say } = setup();
    run.refuseHello = 'rank 0 is already connected';
    say('main-0', 'sid-0', 'hello', helloBody(0));
    expect(wire.take('main-0')).toEqual([{ to: 'main-0', type: 'reject', sid: 'sid-0', body: { reason: 'rank 0 is already connected' } }]);
    expect(table.all()).toEqual([]);
    expect(run.warnings).toEqual(['refused rank 0 (pid 1000 on fake): rank 0 is already connected']);
  });

  it('refuses a second hello of the same session or from the same socket', () => {
    const { wire, run, table, say } = setup();
    say('main-0', 'sid-0', 'hello', helloBody(0));
    wire.take('main-0');
    say('other', 'sid-0', 'hello', helloBody(1)); // the same session id from another socket
    say('main-0', 'sid-1', 'hello', helloBody(1)); // another session id from the same socket
    expect(wire.take('other').map((s) => [s.type, s.body.message])).toEqual([['error', 'protocol violation: session sid-0 already said hello']]);
    expect(wire.take('main-0').map((s) => [s.type, s.body.message])).toEqual([['error', 'protocol violation: session sid-1 already said hello']]);
    expect(table.all().map((s) => s.sid)).toEqual(['sid-0']);
    expect(run.heard).toEqual(['hello 0']);
  });

  it('refuses a ready sent twice, and messages other than progress, error and bye before the ready', () => {
    const { wire, run, say } = setup();
    say('main-0', 'sid-0', 'hello', helloBody(0));
    say('main-0', 'sid-0', 'step', { step: 0, counts: null, last: null });
    say('main-0', 'sid-0', 'progress', { phase: 'data', done: 1, total: 2 });
    say('main-0', 'sid-0', 'ready', READY);
    say('main-0', 'sid-0', 'ready', READY);
    expect(wire.take('main-0').map((s) => s.body.message ?? s.type)).toEqual(['welcome', 'protocol violation: "step" before "ready"', 'plan', 'protocol violation: "ready" was already sent']);
    expect(run.heard).toEqual(['hello 0', 'progress 0', 'ready 0']);
  });

  it('closes a session whose ready the run refuses: it is rejected, and its later messages are refused', () => {
    const { wire, run, table, say } = setup();
    run.refuseReady = 'the model has no quantized layers';
    say('main-0', 'sid-0', 'hello', helloBody(0));
    say('main-0', 'sid-0', 'ready', READY);
    expect(wire.take('main-0').map((s) => [s.type, s.body.reason])).toEqual([['welcome', undefined], ['reject', 'the model has no quantized layers']]);
    expect(table.active()).toEqual([]);
    say('main-0', 'sid-0', 'step', { step: 0, counts: null, last: null });
    expect(wire.take('main-0').map((s) => s.body.message)).toEqual(['session sid-0 is closed']);
    expect(run.heard).toEqual(['hello 0', 'ready 0']);
  });

  it('never acts on a message from a socket that did not prove the secret, even with a known session id', () => {
    const { wire, run, say, join } = setup();
    join(0);
    say('intruder', 'sid-0', 'step', { step: 0, counts: null, last: null });
    say('intruder', 'sid-0', 'attach', { secret: 'guessed' });
    say('main-0', 'sid-9', 'step', { step: 0, counts: null, last: null }); // a bound socket borrowing another session id
    const replies = wire.take('intruder');
    expect(replies.map((s) => s.type)).toEqual(['error', 'error']);
    expect(replies[0]!.body.message).toMatch(/unknown session sid-0 on this socket/);
    expect(replies[1]!.body.message).toMatch(/cannot attach/);
    expect(wire.take('main-0')[0]!.body.message).toMatch(/unknown session sid-9 on this socket/);
    expect(run.heard).toEqual(['hello 0', 'ready 0']);
  });

  it('acknowledges heartbeats of both bound sockets, and says bye back on a bye', () => {
    const { wire, run, table, say, join } = setup();
    join(0);
    say('beat-0', 'sid-0', 'heartbeat', {});
    say('main-0', 'sid-0', 'heartbeat', {});
    expect(wire.take('beat-0').map((s) => s.type)).toEqual(['heartbeat_ack']);
    expect(wire.take('main-0').map((s) => s.type)).toEqual(['heartbeat_ack']);
    say('main-0', 'sid-0', 'bye', { last: null });
    expect(wire.take('main-0').map((s) => s.type)).toEqual(['bye']);
    expect(table.active()).toEqual([]);
    expect(table.all()[0]!.state).toBe('closed');
    expect(run.heard).toEqual(['hello 0', 'ready 0', 'bye 0']);
    say('beat-0', 'sid-0', 'heartbeat', {}); // a closed session's heartbeat: not acknowledged, not an error
    expect(wire.take('beat-0')).toEqual([]);
  });

  it('loses a session silent past the timeout, once; one heard from in time stays', () => {
    const { run, table, say, join } = setup();
    join(0);
    join(1);
    vi.advanceTimersByTime(600);
    say('beat-1', 'sid-1', 'heartbeat', {}); // rank 1's heartbeat thread is alive
    vi.advanceTimersByTime(600); // rank 0: 1.2 s of silence
    expect(run.lostRanks.map((l) => l.rank)).toEqual([0]);
    expect(run.lostRanks[0]!.reason).toMatch(/^no message or heartbeat for 1\.\d s$/);
    expect(table.all().map((s) => s.state)).toEqual(['lost', 'ready']);
    expect(table.active().map((s) => s.rank)).toEqual([1]);
    vi.advanceTimersByTime(5000);
    expect(run.lostRanks.map((l) => l.rank)).toEqual([0, 1]); // each session is lost once
  });

  it('answers a lost session that speaks again that it is lost, without telling the run', () => {
    const { wire, run, say, join } = setup();
    join(0);
    vi.advanceTimersByTime(TIMEOUT_MS + 400);
    say('main-0', 'sid-0', 'step', { step: 0, counts: null, last: null });
    expect(wire.take('main-0').map((s) => s.body.message)).toEqual(['session sid-0 is lost (it was silent too long)']);
    expect(run.heard).toEqual(['hello 0', 'ready 0']);
  });

  it('does not expire a session after it said bye or was closed for a restart', () => {
    const { run, table, say, join } = setup();
    join(0);
    join(1);
    say('main-0', 'sid-0', 'bye', { last: null });
    table.closeAll();
    vi.advanceTimersByTime(10 * TIMEOUT_MS);
    expect(run.lostRanks).toEqual([]);
    expect(table.all().map((s) => s.state)).toEqual(['closed', 'closed']);
  });

  it('aborts every socket of the open sessions only, and sends nothing once closed', async () => {
    const { wire, table, say, join } = setup();
    join(0);
    join(1);
    say('main-1', 'sid-1', 'bye', { last: null });
    wire.take('main-1');
    table.abort('stopping');
    expect(wire.sent.map((s) => [s.to, s.type, s.body.reason])).toEqual([
      ['main-0', 'abort', 'stopping'],
      ['beat-0', 'abort', 'stopping'],
    ]);
    wire.sent.length = 0;
    await table.close();
    expect(wire.closed).toBe(true);
    table.send(table.all()[0]!, 'abort', { reason: 'late' });
    say('main-0', 'sid-0', 'step', { step: 0, counts: null, last: null });
    expect(wire.sent).toEqual([]);
  });

  it('summarises a flood of refused frames in one warning per interval, and passes them to the run', async () => {
    const { run, table } = setup();
    for (let i = 0; i < 50; i++) table.events.refused(new ProtocolError(`bad frame ${i}`));
    expect(run.warnings).toEqual(['refused a message: bad frame 0']); // reported at once, then held for 5 s
    expect(run.heard.filter((h) => h.startsWith('refused'))).toHaveLength(50);
    vi.advanceTimersByTime(5000);
    expect(run.warnings).toEqual(['refused a message: bad frame 0', 'refused 49 messages (the last: bad frame 49)']);
    table.events.refused(new ProtocolError('one more'));
    await table.close(); // the count left at the end is reported
    expect(run.warnings.at(-1)).toBe('refused a message: one more');
  });

  it('turns an error thrown by the run while handling a message into a warning', () => {
    const { run, say, join } = setup();
    join(0);
    run.message = () => {
      throw new Error('a bug');
    };
    expect(() => say('main-0', 'sid-0', 'step', { step: 0, counts: null, last: null })).not.toThrow();
    expect(run.warnings).toEqual([expect.stringMatching(/^internal error while handling a "step" message: Error: a bug/)]);
  });
});
