#!/usr/bin/env node
// The config's documentation, generated from the zod schema (src/config/schema.ts): the README's
// "Config reference" table and trqat.schema.json. test/config/config-docs.test.ts fails when they drift.
// Reads the built controller: `npm run docs:config` builds, then runs this with --write.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const README = join(ROOT, 'README.md');
const JSON_SCHEMA = join(ROOT, 'trqat.schema.json');

const program = new Command('config-docs')
  .description('Generate the README config reference and trqat.schema.json from src/config/schema.ts (via dist/)')
  .option('--write', 'write both files')
  .option('--check', 'exit 1 when either file differs from the schema')
  .parse();
const opts = program.opts();

const built = join(ROOT, 'dist', 'config', 'docs.js');
if (!existsSync(built)) {
  console.error(`config-docs: ${built} is missing; build first (npm run build), or run npm run docs:config`);
  process.exit(2);
}
const { configJsonSchemaText, withConfigReference } = await import(built);

const files = [
  [README, withConfigReference(readFileSync(README, 'utf8'))],
  [JSON_SCHEMA, configJsonSchemaText()],
];
let stale = 0;
for (const [path, text] of files) {
  const current = existsSync(path) ? readFileSync(path, 'utf8') : null;
  if (current === text) continue;
  stale++;
  if (opts.write) {
    writeFileSync(path, text);
    console.log(`config-docs: wrote ${path}`);
  } else {
    console.log(`config-docs: ${path} differs from the schema`);
  }
}
if (!opts.write && !opts.check) {
  console.log(stale === 0 ? 'config-docs: both files match the schema' : 'config-docs: npm run docs:config writes them');
}
process.exit(opts.check && stale > 0 ? 1 : 0);
