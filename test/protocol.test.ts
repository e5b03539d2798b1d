import { Packr, Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { decodeWorkerMessage, encode, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, ProtocolError, VersionMismatchError } from '../src/bridge/protocol.js';

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
    const message = decodeWorkerMessage(frame(envelope('step', { step: 3, counts: [1, 0, 2], loss: 0.5, correct: 10, samples: 16 })));
    expect(message).toEqual({ type: 'step', sid: 'abc123', seq: 4, body: { step: 3, counts: [1, 0, 2], loss: 0.5, correct: 10, samples: 16 } });
  });

  it('encodes the versioned envelope', () => {
    const decoded = new Unpackr({ mapsAsObjects: true }).unpack(encode('lr', 'abc', 7, { step: 1, lr_quant: 0.1, lr_other: 0.2, stop: false }));
    expect(decoded).toEqual({ v: PROTOCOL_VERSION, type: 'lr', sid: 'abc', seq: 7, body: { step: 1, lr_quant: 0.1, lr_other: 0.2, stop: false } });
  });

  it('says what is wrong with bad frames', () => {
    expect(refusal(Buffer.from([0x92, 0x01])).message).toMatch(/not valid MessagePack/);
    expect(refusal(frame({ type: 'step' })).message).toMatch(/bad envelope: .*v/);
    expect(refusal(frame(envelope('launch', {}))).message).toMatch(/unknown message type "launch"/);
    const bad = refusal(frame(envelope('step', { step: 'three', counts: null, loss: null, correct: null, samples: null })));
    expect(bad.message).toMatch(/bad "step" message: step: .*number/);
    expect(bad.sid).toBe('abc123');
    expect(refusal(Buffer.alloc(MAX_MESSAGE_BYTES + 1)).message).toMatch(/exceeds/);
  });

  it('refuses another protocol version naming both versions', () => {
    const error = refusal(frame(envelope('hello', { protocol: 99 }, 99)));
    expect(error).toBeInstanceOf(VersionMismatchError);
    expect(error.message).toMatch(/worker speaks version 99, this controller speaks version 1/);
    const later = refusal(frame(envelope('step', {}, 2)));
    expect(later).not.toBeInstanceOf(VersionMismatchError);
    expect(later.message).toMatch(/message "step" uses protocol version 2; this controller speaks version 1/);
  });
});
