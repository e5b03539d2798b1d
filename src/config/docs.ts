import { z } from 'zod';
import { configSchema } from './schema.js';

// The config's documentation, generated from the schema's `.describe()` texts and defaults: the
// README's config reference table and trqat.schema.json (scripts/config-docs.mjs writes both;
// test/config/config-docs.test.ts fails when either drifts from the schema).

/** One key of the config, as documented. */
export interface ConfigKey {
  /** Dotted path, e.g. "optimizer.lr". */
  path: string;
  description: string | undefined;
  /** The schema's default (before resolveConfig fills the derived ones); undefined when there is none. */
  default: unknown;
  /** A section (an object of more keys), as opposed to a value. */
  section: boolean;
  /** A section with the same keys as an earlier one (tr.schedule and lr_schedule): its path. */
  sameAs: string | null;
}

type Def = { type: string; innerType?: z.core.$ZodType; defaultValue?: unknown; shape?: Record<string, z.core.$ZodType>; options?: z.core.$ZodType[] };

/** The first description on the way through the default/prefault/nullable wrappers to the value. */
function unwrap(schema: z.core.$ZodType): { description: string | undefined; default: unknown; inner: z.core.$ZodType } {
  let description: string | undefined;
  let value: unknown;
  let node = schema;
  for (;;) {
    description ??= z.globalRegistry.get(node)?.description;
    const def = node._zod.def as Def;
    if ((def.type === 'default' || def.type === 'prefault') && value === undefined) value = def.defaultValue;
    // A key that takes a plug-in or a built-in (tr.schedule, tr.talr): the built-in's keys, the last option.
    if (def.type === 'union' && def.options) node = def.options[def.options.length - 1]!;
    else if (!def.innerType) return { description, default: value, inner: node };
    else node = def.innerType;
  }
}

/** Every key of the config, depth first in the schema's order, sections before their keys. */
export function configKeys(schema: z.core.$ZodType = configSchema): ConfigKey[] {
  const keys: ConfigKey[] = [];
  const seen = new Map<z.core.$ZodType, string>();
  const visit = (shape: Record<string, z.core.$ZodType>, prefix: string): void => {
    for (const [name, child] of Object.entries(shape)) {
      const path = prefix + name;
      const { description, default: value, inner } = unwrap(child);
      const def = inner._zod.def as Def;
      if (def.type !== 'object' || !def.shape) {
        keys.push({ path, description, default: value, section: false, sameAs: null });
        continue;
      }
      const sameAs = seen.get(inner) ?? null;
      keys.push({ path, description, default: undefined, section: true, sameAs });
      if (sameAs === null) {
        seen.set(inner, path);
        visit(def.shape, `${path}.`);
      }
    }
  };
  visit((schema._zod.def as Def).shape ?? {}, '');
  return keys;
}

// ---------------------------------------------------------------------------------------------
// the README table

export const README_START = '<!-- config-reference:start (generated from src/config/schema.ts by `npm run docs:config`; edit the schema, not this table) -->';
export const README_END = '<!-- config-reference:end -->';

const cell = (text: string): string => text.replaceAll('|', '\\|').replaceAll('\n', ' ');

function formatValue(value: unknown): string {
  if (typeof value === 'number' && value !== 0 && Math.abs(value) < 0.01) return value.toExponential();
  if (Array.isArray(value)) return `[${value.map(formatValue).join(', ')}]`;
  return JSON.stringify(value);
}

function formatDefault(value: unknown): string {
  if (value === undefined) return '';
  return `\`${typeof value === 'string' ? value : formatValue(value)}\``;
}

/** The config reference: one table, a bold row per section, one row per key. */
export function configReferenceTable(keys: readonly ConfigKey[] = configKeys()): string {
  const lines = ['| key | default | meaning |', '|---|---|---|'];
  for (const key of keys) {
    if (key.sameAs !== null) {
      lines.push(`| \`${key.path}.*\` | as \`${key.sameAs}\` | ${cell(key.description ?? '')}: the same keys as \`${key.sameAs}\` |`);
    } else if (key.section) {
      lines.push(`| **\`${key.path}\`** | | ${cell(key.description ?? '')} |`);
    } else {
      lines.push(`| \`${key.path}\` | ${cell(formatDefault(key.default))} | ${cell(key.description ?? '')} |`);
    }
  }
  return lines.join('\n');
}

/** `readme` with the text between the config reference markers replaced by the generated table. */
export function withConfigReference(readme: string, table: string = configReferenceTable()): string {
  const start = readme.indexOf(README_START);
  const end = readme.indexOf(README_END);
  if (start < 0 || end < start) throw new Error(`README.md lacks the markers of the config reference:\n${README_START}\n${README_END}`);
  return `${readme.slice(0, start + README_START.length)}\n${table}\n${readme.slice(end)}`;
}

// ---------------------------------------------------------------------------------------------
// the JSON Schema for editors

/**
 * The JSON Schema of a config file as a user writes it (zod's input side: every key optional),
 * with the descriptions and defaults, in draft-07, the draft editors' YAML and JSON support knows.
 */
export function configJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(configSchema, {
    io: 'input',
    target: 'draft-07',
    // zod drops the default of a key whose value is transformed (optimizer.name, worker.amp), as
    // the output's default need not be a valid input; ours are, and editors show them.
    override: ({ zodSchema, jsonSchema }) => {
      const def = zodSchema._zod.def as Def;
      if (def.type === 'default' && jsonSchema.default === undefined) jsonSchema.default = def.defaultValue as z.core.JSONSchema.BaseSchema['default'];
    },
  });
  const { $schema, ...rest } = generated as Record<string, unknown>;
  return {
    $schema,
    title: 'trqat config',
    description: 'A trqat run config (YAML or JSON). Generated from src/config/schema.ts; the README\'s "Config reference" explains every key.',
    ...rest,
  };
}

export const configJsonSchemaText = (): string => `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
