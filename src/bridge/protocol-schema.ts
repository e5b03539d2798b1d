// The protocol's message checks for the Python sessions, generated from the zod schemas of
// protocol.ts (the one source): `npm run protocol:schema` writes python/trqat/protocol.schema.json,
// which python/trqat/protocol.py checks messages against (python/trqat/json_schema.py), so Python
// needs no Node at run time. test/bridge/protocol-schema.test.ts fails when the committed file is stale.
import { z } from 'zod';
import { EXPORT_FORMATS } from '../config/export-formats.js';
import { anyNumber, controllerBodies, envelopeSchema, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, workerBodies } from './protocol.js';

type JsonSchema = Record<string, unknown>;

/** One zod schema as JSON Schema, as a sender's input (extra fields of z.object allowed, as zod allows them). */
export function toJsonSchema(schema: z.ZodType): JsonSchema {
  const generated = z.toJSONSchema(schema, {
    io: 'input',
    // zod writes what JSON Schema cannot say as {}: the one such schema here is named below, any other fails
    unrepresentable: 'any',
    override: ({ zodSchema, jsonSchema }) => {
      // a number that may be NaN or infinite (a diverged loss): JSON Schema's numbers are finite
      if (zodSchema === anyNumber) Object.assign(jsonSchema, { type: 'number', 'x-non-finite': true });
      else if (zodSchema._zod.def.type === 'custom' || zodSchema._zod.def.type === 'transform') {
        throw new Error(`protocol-schema: a ${zodSchema._zod.def.type} schema has no JSON Schema; name it in protocol-schema.ts`);
      }
    },
  }) as JsonSchema;
  const { $schema: _, ...rest } = generated;
  return rest;
}

function bodies(table: Record<string, z.ZodType>): Record<string, JsonSchema> {
  return Object.fromEntries(Object.entries(table).map(([type, schema]) => [type, toJsonSchema(schema)]));
}

/** The file's content: the envelope, every message body by sender, and the export formats. */
export function protocolSchema(): JsonSchema {
  return {
    $comment: 'Generated from src/bridge/protocol.ts and src/config/export-formats.ts by `npm run protocol:schema`; do not edit.',
    protocol_version: PROTOCOL_VERSION,
    max_message_bytes: MAX_MESSAGE_BYTES,
    envelope: toJsonSchema(envelopeSchema),
    session: bodies(workerBodies),
    controller: bodies(controllerBodies),
    export_formats: [...EXPORT_FORMATS],
  };
}

export function protocolSchemaText(): string {
  return `${JSON.stringify(protocolSchema(), null, 2)}\n`;
}
