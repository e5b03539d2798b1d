#!/usr/bin/env node
// python/trqat/protocol.schema.json, generated from the zod message schemas (src/bridge/protocol.ts)
// and the export formats (src/config/export-formats.ts): what the Python sessions check messages against.
// Reads the built controller: `npm run protocol:schema` builds, then runs this.
// test/bridge/protocol-schema.test.ts fails when the committed file is stale.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TARGET = join(ROOT, 'python', 'trqat', 'protocol.schema.json');
const built = join(ROOT, 'dist', 'bridge', 'protocol-schema.js');
if (!existsSync(built)) {
  console.error(`protocol-schema: ${built} is missing; build first (npm run build), or run npm run protocol:schema`);
  process.exit(2);
}
const { protocolSchemaText } = await import(built);
const text = protocolSchemaText();
if (existsSync(TARGET) && readFileSync(TARGET, 'utf8') === text) {
  console.log(`protocol-schema: ${TARGET} is up to date`);
} else {
  writeFileSync(TARGET, text);
  console.log(`protocol-schema: wrote ${TARGET}`);
}
