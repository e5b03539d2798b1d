// The protocol's message shapes live twice, in zod (src/bridge/protocol.ts) and in the sessions'
// checker (python/trqat/protocol.py). Both check the same examples (test/support/fixtures/protocol-messages.json;
// the Python half is python/tests/test_protocol.py): every example accepted, every broken variant
// refused, and the same fields known on both sides.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { controllerBodies, decodeWorkerMessage, envelopeSchema, PROTOCOL_VERSION, ProtocolError, workerBodies } from '../../src/bridge/protocol.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

type Body = Record<string, unknown>;
interface Examples {
  minimal: Body;
  full?: Body;
  more?: Body[];
}
type Sender = 'session' | 'controller';
interface Fixture {
  session: Record<string, Examples>;
  controller: Record<string, Examples>;
  broken: { why: string; from: Sender; type: string; body: Body }[];
  broken_envelopes: { why: string; envelope: unknown }[];
}

const fixture = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'test', 'support', 'fixtures', 'protocol-messages.json'), 'utf8')) as Fixture;
const schemas: Record<Sender, Record<string, z.ZodObject>> = { session: workerBodies, controller: controllerBodies };
const packr = new Packr({ useRecords: false });

/** The controller's verdict on a body: null when accepted, else why not. */
function verdict(from: Sender, type: string, body: unknown): string | null {
  if (from === 'session') {
    try {
      decodeWorkerMessage(packr.pack({ v: PROTOCOL_VERSION, type, sid: 'abc123', seq: 1, body }));
      return null;
    } catch (error) {
      expect(error).toBeInstanceOf(ProtocolError);
      return (error as Error).message;
    }
  }
  const envelope = envelopeSchema.safeParse({ v: PROTOCOL_VERSION, type, sid: 'abc123', seq: 1, body });
  const parsed = schemas.controller[type]!.safeParse(body);
  return envelope.success && parsed.success ? null : String((envelope.error ?? parsed.error)?.issues[0]?.message);
}

/** A value of another type than `value`'s (and than null's: a nullable field holds null in some examples). */
const wrongType = (value: unknown): unknown => (typeof value === 'string' ? 12345 : typeof value === 'boolean' ? 'x' : true);

const cases = (Object.keys(schemas) as Sender[]).flatMap((from) => Object.entries(fixture[from]).map(([type, examples]) => ({ from, type, examples })));

describe('the shared protocol examples (test/support/fixtures/protocol-messages.json)', () => {
  it('cover every message type of both directions', () => {
    for (const from of Object.keys(schemas) as Sender[]) expect(Object.keys(fixture[from]).sort()).toEqual(Object.keys(schemas[from]).sort());
  });

  it.each(cases)('$from $type: every example is accepted', ({ from, type, examples }) => {
    for (const body of [examples.minimal, examples.full ?? examples.minimal, ...(examples.more ?? [])]) {
      expect(verdict(from, type, body), JSON.stringify(body)).toBeNull();
    }
  });

  it.each(cases)('$from $type: the examples name exactly the schema\'s fields, required and optional', ({ from, type, examples }) => {
    const shape = schemas[from][type]!.shape as Record<string, z.ZodType>;
    const required = Object.keys(shape).filter((key) => !shape[key]!.safeParse(undefined).success);
    expect(Object.keys(examples.minimal).sort()).toEqual(required.sort());
    expect(Object.keys(examples.full ?? examples.minimal).sort()).toEqual(Object.keys(shape).sort());
  });

  it.each(cases)('$from $type: a missing required field or a field of another type is refused', ({ from, type, examples }) => {
    for (const key of Object.keys(examples.minimal)) {
      const { [key]: _dropped, ...rest } = examples.minimal;
      expect(verdict(from, type, rest), `without ${key}`).not.toBeNull();
    }
    const full = examples.full ?? examples.minimal;
    for (const [key, value] of Object.entries(full)) {
      expect(verdict(from, type, { ...full, [key]: wrongType(value) }), `${key}: ${JSON.stringify(wrongType(value))}`).not.toBeNull();
    }
  });

  it.each(fixture.broken)('refuses the broken $from $type: $why', ({ from, type, body }) => {
    expect(verdict(from, type, body)).not.toBeNull();
  });

  it.each(fixture.broken_envelopes)('refuses the broken envelope: $why', ({ envelope }) => {
    expect(() => decodeWorkerMessage(packr.pack(envelope))).toThrow(ProtocolError);
  });
});
