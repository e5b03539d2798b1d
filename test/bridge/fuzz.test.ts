// Property-based fuzzing of the controller's side of the protocol (fast-check), and a running
// controller (serve()) fed arbitrary frames, borrowed session ids and floods by a stranger while a
// client session trains: nothing crashes, nothing changes the run, the log stays bounded.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { Dealer } from 'zeromq';
import { loadConfig } from '../../src/config/load.js';
import { decodeWorkerMessage, PROTOCOL_VERSION, ProtocolError, workerBodies } from '../../src/bridge/protocol.js';
import type { RunEvent } from '../../src/run/record.js';
import { serve } from '../../src/entry/serve.js';
import { FakeClient, helloBody, LAYERS, pack } from '../support/fake-client.js';
import { readRun } from '../support/helpers.js';

const packr = new Packr({ useRecords: false, variableMapSize: true });
const SEED = 20_261_130;

/** A valid body of every message type a session sends. */
const GOOD: Record<keyof typeof workerBodies, Record<string, unknown>> = {
  hello: helloBody('secret'),
  attach: { secret: 'secret' },
  ready: { device: 'cpu', layers: LAYERS, params: { quantized: 1, other: 1 }, train_size: 1, test_size: 1, steps_per_epoch: 1, start_step: 0 },
  step: { step: 3, counts: [1, 2, 3], last: { loss: 0.5, correct: 1, samples: 2 } },
  evaluated: { top1: 50, loss: 1, samples: 10, seconds: 0.1 },
  saved: { path: '/x', bytes: 10 },
  bye: { last: null },
  heartbeat: {},
  progress: { phase: 'data', done: 1, total: null },
  error: { message: 'boom', kind: 'runtime' },
};
const TYPES = Object.keys(GOOD) as (keyof typeof GOOD)[];

/** A session id as sessions make them: hex. */
const hex = (minLength: number, maxLength: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength, maxLength });

const anyValue = fc.oneof(fc.jsonValue(), fc.uint8Array({ maxLength: 16 }).map((b) => Buffer.from(b)), fc.constantFrom(Number.NaN, Infinity, -0, 2 ** 64, -(2 ** 63)));
/** A body of `type` with some fields replaced by anything, some removed, some added. */
const bodyOf = (type: keyof typeof GOOD) =>
  fc
    .record({ replace: fc.dictionary(fc.constantFrom(...Object.keys(GOOD[type]), 'extra'), anyValue, { maxKeys: 3 }), drop: fc.subarray(Object.keys(GOOD[type])) })
    .map(({ replace, drop }) => {
      const body: Record<string, unknown> = { ...GOOD[type], ...replace };
      for (const key of drop) delete body[key];
      return body;
    });
const envelope = fc.constantFrom(...TYPES).chain((type) =>
  fc.record({
    v: fc.oneof(fc.constant(PROTOCOL_VERSION), anyValue),
    type: fc.oneof(fc.constant<string>(type), fc.string({ maxLength: 12 })),
    sid: fc.oneof(hex(1, 16), anyValue),
    seq: fc.oneof(fc.nat(), anyValue),
    body: fc.oneof(bodyOf(type), anyValue),
  }),
);
/** Any frame a peer could send: bytes, any MessagePack value, envelopes of every type close to valid. */
const frames = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  anyValue.map((value) => packr.pack(value)),
  envelope.map((value) => packr.pack(value)),
  envelope.map((value) => packr.pack(value)),
);

describe('decodeWorkerMessage', () => {
  it('returns a valid message or throws a ProtocolError that says what is wrong, for any frame', () => {
    fc.assert(
      fc.property(frames, (frame) => {
        let message;
        try {
          message = decodeWorkerMessage(frame);
        } catch (error) {
          expect(error).toBeInstanceOf(ProtocolError);
          expect((error as Error).message.length).toBeGreaterThan(10);
          return;
        }
        expect(TYPES).toContain(message.type);
        expect(workerBodies[message.type].safeParse(message.body).success).toBe(true);
      }),
      { numRuns: 3000, seed: SEED },
    );
  });

  it('every valid message of every type decodes to itself; unknown body fields are dropped', () => {
    fc.assert(
      fc.property(fc.constantFrom(...TYPES), hex(1, 64), fc.nat(), fc.jsonValue(), (type, sid, seq, extra) => {
        const message = decodeWorkerMessage(pack(type, sid, seq, { ...GOOD[type], extra_field: extra }));
        expect(message).toEqual({ type, sid, seq, body: workerBodies[type].parse(GOOD[type]) });
      }),
      { numRuns: 300, seed: SEED },
    );
  });
});

const STEPS = 20;

/**
 * A client run under serve(): one session steps through STEPS steps, reports an evaluation and says
 * bye. `attack` runs in the middle (between steps 5 and 6) with the endpoint and the session's id.
 */
async function clientRun(attack?: (endpoint: string, sid: string) => Promise<void>) {
  const out = mkdtempSync(join(tmpdir(), 'trqat-fuzz-'));
  const config = loadConfig(null, [
    `out_dir=${out}`,
    'tr.lambda=0.02',
    'tr.momentum=0.5',
    'worker.heartbeat_interval_ms=100',
    'worker.heartbeat_timeout_ms=3000',
    'dashboard.enabled=false',
  ]);
  const events: RunEvent[] = [];
  const handle = await serve(config, { onEvent: (event) => events.push(event) });
  const client = new FakeClient(handle.endpoint, handle.peerEnv['TRQAT_SECRET']!);
  const started = Date.now();
  expect((await client.join(STEPS)).type).toBe('plan');
  const replies = [];
  for (let t = 0; t < STEPS; t++) {
    if (t === 6 && attack) await attack(handle.endpoint, client.sid);
    replies.push(await client.step(t));
  }
  await client.send('evaluated', { top1: 55, loss: 0.7, samples: 16, seconds: 0.1, last: { loss: 0.1, correct: 16, samples: 16 } });
  expect((await client.request('bye', { last: null })).type).toBe('bye');
  client.close();
  const summary = await handle.done;
  const warnings = events.filter((e): e is Extract<RunEvent, { type: 'warning' }> => e.type === 'warning').map((e) => e.message);
  return { summary, replies, warnings, seconds: (Date.now() - started) / 1000, record: readRun(handle.runDir) };
}

/** A metrics line without its clock. */
const numbers = ({ time: _t, steps_per_s: _s, ...rest }: Record<string, unknown>) => rest;

describe('a running controller and a stranger on its socket', () => {
  it('arbitrary frames, a borrowed session id, 80 fake steps, a fake evaluation and a flood change nothing; the log stays bounded', async () => {
    const straight = await clientRun();
    const answers: string[] = [];
    const hijacked = await clientRun(async (endpoint, sid) => {
      const stranger = new Dealer({ linger: 0, receiveHighWaterMark: 100_000 });
      stranger.connect(endpoint);
      let seq = 0;
      const send = (type: string, body: unknown) => stranger.send(pack(type, sid, seq++, body));
      // The session's own id, from a socket that never proved the secret.
      await send('step', { step: 6, counts: [400, 1000, 40], last: { loss: 1e9, correct: 0, samples: 1 } });
      for (let t = 6; t < 86; t++) await send('step', { step: t, counts: [0, 0, 0], last: null }); // 80 fake steps: U would go to 0
      await send('evaluated', { top1: 1e9, loss: 0, samples: 1, seconds: 0 });
      await send('error', { message: 'fake failure', kind: 'config' });
      await send('saved', { path: '/etc', bytes: 1 });
      await send('progress', { phase: 'eval', done: 1, total: 1 });
      await send('bye', { last: null, error: 'fake' });
      await send('ready', GOOD.ready);
      await send('attach', { secret: 'a guess' });
      await send('hello', helloBody('a guess'));
      for (let i = 0; i < 50; i++) await send('heartbeat', {});
      for (const frame of fc.sample(frames, { numRuns: 2000, seed: SEED })) await stranger.send(frame);
      const flood = Buffer.from('not msgpack');
      for (let i = 0; i < 10_000; i++) await stranger.send(flood);
      await new Promise((resolve) => setTimeout(resolve, 300));
      for (;;) {
        const reply = await Promise.race([stranger.receive(), new Promise<null>((resolve) => setTimeout(() => resolve(null), 200))]);
        if (!reply) break;
        answers.push(String((packr.unpack(reply[0]!) as { type: string }).type));
      }
      stranger.close();
    });
    expect(hijacked.summary.status).toBe('completed');
    expect(hijacked.summary.best_top1).toBe(55); // not 1e9
    expect(hijacked.record.steps.map(numbers)).toEqual(straight.record.steps.map(numbers));
    expect(hijacked.record.evals.map(numbers)).toEqual(straight.record.evals.map(numbers));
    expect(hijacked.replies.map((r) => r.body)).toEqual(straight.replies.map((r) => r.body));
    expect(answers.length).toBeGreaterThan(100); // the stranger was answered (errors, rejects), never welcomed
    expect(answers.filter((type) => !['error', 'reject'].includes(type))).toEqual([]);
    // ~12,000 refused frames: a summary line at most every 5 seconds, and one at the end.
    const refusals = hijacked.warnings.filter((w) => /^refused/.test(w));
    expect(refusals.length).toBeGreaterThanOrEqual(1);
    expect(refusals.length).toBeLessThanOrEqual(2 + Math.ceil(hijacked.seconds / 5));
    expect(refusals.at(-1)).toMatch(/^refused \d+ messages \(the last: /);
    expect(hijacked.warnings.join('\n').length).toBeLessThan(10_000);
  }, 120_000);

  it("a stranger's heartbeats in the name of a hung session do not keep it alive", async () => {
    const out = mkdtempSync(join(tmpdir(), 'trqat-fuzz-'));
    const config = loadConfig(null, [`out_dir=${out}`, 'worker.heartbeat_interval_ms=100', 'worker.heartbeat_timeout_ms=1500', 'dashboard.enabled=false']);
    const handle = await serve(config);
    const client = new FakeClient(handle.endpoint, handle.peerEnv['TRQAT_SECRET']!);
    await client.join(STEPS);
    await client.step(0);
    client.hang();
    const hungAt = Date.now();
    const stranger = new Dealer({ linger: 0 });
    stranger.connect(handle.endpoint);
    let seq = 0;
    const beats = setInterval(() => void stranger.send(pack('heartbeat', client.sid, seq++, {})).catch(() => undefined), 50);
    const error = await handle.done.then(
      () => new Error('the run should have failed'),
      (e: Error) => e,
    );
    clearInterval(beats);
    stranger.close();
    client.close();
    expect(error.message).toMatch(/rank 0 \(pid \d+ on test\) stopped answering \(no message or heartbeat for 1\.\d s\)/);
    expect(Date.now() - hungAt).toBeLessThan(1500 + 2000);
  });
});
