import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr, Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { BridgeServer } from '../../src/bridge/server.js';
import { decodeWorkerMessage, encode, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, ProtocolError, VersionMismatchError } from '../../src/bridge/protocol.js';

const packr = new Packr({ useRecords: false });
const frame = (value: unknown) => packr.pack(value);
const envelope = (type: string, body: object, v = PROTOCOL_VERSION) => ({ v, type, sid: 'abc123', seq: 4, body });

function refusal(bytes: Buffer): ProtocolError {
  try {
    decodeWorkerMessage(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError);
    return error as ProtocolError;
  }
  throw new Error('expected a ProtocolError');
}

describe('protocol', () => {
  it('decodes a valid step message', () => {
    const body = { step: 3, counts: [1, 0, 2], last: { loss: 0.5, correct: 10, samples: 16 } };
    const message = decodeWorkerMessage(frame(envelope('step', body)));
    expect(message).toEqual({ type: 'step', sid: 'abc123', seq: 4, body });
  });

  it('encodes the versioned envelope', () => {
    const lr = { step: 1, lr_quant: 0.1, lr_other: 0.2, k: null, K: 0, R: 1e-3, U: 0.1, stop: false, eval: true, save: null, state: { K: 0, U: 0.1, last_step: 1 } };
    const decoded = new Unpackr({ mapsAsObjects: true }).unpack(encode('lr', 'abc', 7, lr));
    expect(decoded).toEqual({ v: PROTOCOL_VERSION, type: 'lr', sid: 'abc', seq: 7, body: lr });
  });

  it('says what is wrong with bad frames', () => {
    expect(refusal(Buffer.from([0x92, 0x01])).message).toMatch(/not valid MessagePack/);
    expect(refusal(frame({ type: 'step' })).message).toMatch(/bad envelope: .*v/);
    expect(refusal(frame(envelope('launch', {}))).message).toMatch(/unknown message type "launch"/);
    const bad = refusal(frame(envelope('step', { step: 'three', counts: null, last: null })));
    expect(bad.message).toMatch(/bad "step" message: step: .*number/);
    expect(bad.sid).toBe('abc123');
    expect(refusal(Buffer.alloc(MAX_MESSAGE_BYTES + 1)).message).toMatch(/exceeds/);
  });

  it('refuses another protocol version naming both versions', () => {
    const error = refusal(frame(envelope('hello', { protocol: 99 }, 99)));
    expect(error).toBeInstanceOf(VersionMismatchError);
    expect(error.message).toMatch(new RegExp(`worker speaks version 99, this controller speaks version ${PROTOCOL_VERSION}`));
    const later = refusal(frame(envelope('step', {}, 1)));
    expect(later).not.toBeInstanceOf(VersionMismatchError);
    expect(later.message).toMatch(new RegExp(`message "step" uses protocol version 1; this controller speaks version ${PROTOCOL_VERSION}`));
  });
});

describe('BridgeServer on ipc://', () => {
  it('removes its socket file when it closes (ZeroMQ leaves it behind)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trqat-ipc-'));
    const path = join(dir, 'run.sock');
    const server = await BridgeServer.bind(`ipc://${path}`, { message: () => undefined, refused: () => undefined });
    expect(existsSync(path)).toBe(true);
    await server.close();
    expect(existsSync(path)).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });
});
