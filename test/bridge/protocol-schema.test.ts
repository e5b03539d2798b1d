// python/trqat/protocol.schema.json is generated from the zod schemas (src/bridge/protocol-schema.ts):
// the Python sessions check messages against it. It must be what the zod source gives now.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { protocolSchema, protocolSchemaText } from '../../src/bridge/protocol-schema.js';
import { controllerBodies, workerBodies } from '../../src/bridge/protocol.js';
import { EXPORT_FORMATS } from '../../src/config/export-formats.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

describe('python/trqat/protocol.schema.json', () => {
  it('is what the zod schemas give (else: npm run protocol:schema, and commit it)', () => {
    const committed = readFileSync(join(PACKAGE_ROOT, 'python', 'trqat', 'protocol.schema.json'), 'utf8');
    expect(committed === protocolSchemaText(), 'python/trqat/protocol.schema.json is stale: run npm run protocol:schema').toBe(true);
  });

  it('holds every message type of both senders and the export formats', () => {
    const schema = protocolSchema() as { session: object; controller: object; export_formats: string[] };
    expect(Object.keys(schema.session).sort()).toEqual(Object.keys(workerBodies).sort());
    expect(Object.keys(schema.controller).sort()).toEqual(Object.keys(controllerBodies).sort());
    expect(schema.export_formats).toEqual([...EXPORT_FORMATS]);
  });
});
