import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { isScalar, LineCounter, parse as parseYaml, parseDocument, visit } from 'yaml';
import { z } from 'zod';
import { encode, MAX_MESSAGE_BYTES } from '../bridge/protocol.js';
import { withPreset } from './presets.js';
import { configSchema, type ParsedConfig } from './schema.js';
import { resolveConfig, type ResolvedConfig } from './resolve.js';
import { ConfigError } from '../errors.js';

export { ConfigError };

/**
 * The largest config file, and the most --set text, that is read at all. A config holds settings;
 * the run's config also travels to every rank in one message, which has a size limit of its own.
 */
export const MAX_CONFIG_BYTES = 1 << 20;
/** Errors list this many problems, and this many unknown keys of one mapping, then count the rest. */
const MAX_LISTED = 20;

const mib = (bytes: number) => `${(bytes / (1 << 20)).toFixed(bytes < 1 << 20 ? 2 : 1)} MiB`;

/** Reads a YAML or JSON config file (YAML is a superset of JSON, one parser serves both). */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readLimited(path, MAX_CONFIG_BYTES);
  } catch (error) {
    throw error instanceof ConfigError ? error : new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  let value: unknown;
  try {
    value = parseText(text);
  } catch (error) {
    throw new ConfigError(`config file ${path} is not valid YAML/JSON: ${(error as Error).message}`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(`config file ${path} must hold a mapping of settings, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** Applies `path.to.key=value` overrides; values are read as YAML scalars (numbers, booleans, null, [lists]). */
export function applyOverrides(raw: Record<string, unknown>, overrides: readonly string[]): Record<string, unknown> {
  const total = overrides.reduce((sum, override) => sum + Buffer.byteLength(override), 0);
  if (total > MAX_CONFIG_BYTES) {
    throw new ConfigError(`the --set values hold ${mib(total)} in all; the limit is ${mib(MAX_CONFIG_BYTES)} (put large settings in a config file, or in files the config names)`);
  }
  const result = structuredClone(raw);
  for (const override of overrides) {
    const eq = override.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--set ${override}: expected path=value, e.g. --set optimizer.lr=0.05`);
    const path = override.slice(0, eq).split('.');
    if (path.some((part) => part === '')) throw new ConfigError(`--set ${override}: empty key in path "${override.slice(0, eq)}"`);
    const valueText = override.slice(eq + 1);
    let value: unknown;
    try {
      value = parseYaml(valueText);
    } catch {
      value = valueText;
    }
    let node: Record<string, unknown> = result;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      if (next === undefined || next === null) node[key] = {};
      else if (typeof next !== 'object' || Array.isArray(next)) {
        throw new ConfigError(`--set ${override}: "${key}" is not a section of the config`);
      }
      node = node[key] as Record<string, unknown>;
    }
    node[path[path.length - 1]!] = value ?? null;
  }
  return result;
}

/**
 * Validates a raw config, after filling in its preset (`tr.preset`); every problem is listed with
 * its path, the bad value and what is allowed.
 */
export function parseConfig(raw: unknown, source = 'config'): ParsedConfig {
  const result = configSchema.safeParse(withPreset(raw));
  if (!result.success) {
    const { issues } = result.error;
    const lines = issues.slice(0, MAX_LISTED).map((issue) => `  - ${formatIssue(issue, raw)}`);
    if (issues.length > MAX_LISTED) lines.push(`  - and ${issues.length - MAX_LISTED} more problems`);
    throw new ConfigError(`invalid ${source}:\n${lines.join('\n')}`);
  }
  checkMessageSize(result.data, source);
  return result.data;
}

/** Room the welcome message needs beside the config: the envelope, the checkpoint path, what resolveConfig adds. */
const WELCOME_MARGIN = 64 * 1024;

/** Every rank receives the config in one message (the welcome): a config that cannot fit is refused here, not at startup. */
function checkMessageSize(config: ParsedConfig, source: string): void {
  let bytes: number;
  try {
    bytes = encode('welcome', '0'.repeat(16), 0, { config, resume: null }).length;
  } catch (error) {
    throw new ConfigError(`${source} cannot be sent to the ranks: ${(error as Error).message}`);
  }
  const limit = MAX_MESSAGE_BYTES - WELCOME_MARGIN;
  if (bytes > limit) {
    throw new ConfigError(`${source} is ${mib(bytes)} as the message every rank receives; the limit is ${mib(limit)} (keep large tables out of model.kwargs and optimizer.kwargs: load them in your factory)`);
  }
}

export function loadConfig(path: string | null, overrides: readonly string[] = []): ResolvedConfig {
  const raw = path === null ? {} : readConfigFile(path);
  return resolveConfig(parseConfig(applyOverrides(raw, overrides), path ?? 'config'));
}

function formatIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const where = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
  if (issue.code === 'unrecognized_keys') {
    const allowed = allowedKeys(issue.path);
    const keys = issue.keys.slice(0, MAX_LISTED).map((key) => (issue.path.length > 0 ? `${issue.path.join('.')}.${key}` : key));
    const more = issue.keys.length > MAX_LISTED ? ` and ${issue.keys.length - MAX_LISTED} more` : '';
    return `${keys.join(', ')}${more}: unknown setting${allowed ? ` (allowed here: ${allowed.join(', ')})` : ''}`;
  }
  if (issue.code === 'invalid_key') {
    // A record's key (quant.layer_bits): say which key and why, not zod's "Invalid key in record".
    const parent = issue.path.slice(0, -1).join('.');
    return `${parent}: key ${JSON.stringify(String(issue.path[issue.path.length - 1]))} ${issue.issues[0]?.message ?? issue.message}`;
  }
  const value = valueAt(raw, issue.path);
  const got = value === undefined ? 'it is missing (required)' : `got ${describe(value)}`;
  return `${where}: ${issue.message}; ${got}`;
}

/** Reads a file of at most `limit` bytes; a larger one is refused by its size, without reading it all. */
function readLimited(path: string, limit: number): string {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const tooLarge = (bytes: string) => new ConfigError(`config file ${path} is ${bytes}; the limit is ${mib(limit)} (a config holds settings: put large tables in files the config names)`);
    if (size > limit) throw tooLarge(mib(size));
    // Files whose size stat cannot tell (a pipe) are read up to one byte past the limit.
    const buffer = Buffer.alloc(limit + 1);
    let length = 0;
    for (let n = 1; n > 0 && length <= limit; length += n) n = readSync(fd, buffer, length, buffer.length - length, null);
    if (length > limit) throw tooLarge(`over ${mib(limit)}`);
    return buffer.toString('utf8', 0, length);
  } finally {
    closeSync(fd);
  }
}

/**
 * YAML (or JSON) text to a value, in time linear in its size: the yaml package's own check for
 * duplicate keys compares every key with every other one (minutes for a large mapping), so keys are
 * checked here with one set per mapping.
 */
function parseText(text: string): unknown {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { uniqueKeys: false, lineCounter });
  if (document.errors.length > 0) throw document.errors[0]!;
  let duplicate: string | null = null;
  visit(document, {
    Map(_, map) {
      const seen = new Set<unknown>();
      for (const { key } of map.items) {
        const name = isScalar(key) ? key.value : String(key);
        if (seen.has(name)) {
          const at = isScalar(key) && key.range ? lineCounter.linePos(key.range[0]) : null;
          duplicate = `the key ${JSON.stringify(name)} appears twice in one mapping${at ? ` (line ${at.line}, column ${at.col})` : ''}`;
          return visit.BREAK;
        }
        seen.add(name);
      }
      return undefined;
    },
  });
  if (duplicate) throw new Error(duplicate);
  return document.toJS();
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let node = raw;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

function allowedKeys(path: readonly PropertyKey[]): string[] | null {
  let schema: z.core.$ZodType = configSchema;
  for (const key of [...path, null]) {
    // Look through default/prefault/nullable wrappers to the object underneath.
    let def = schema._zod.def as { type: string; innerType?: z.core.$ZodType; shape?: Record<string, z.core.$ZodType> };
    while (def.innerType) def = def.innerType._zod.def as typeof def;
    if (def.type !== 'object' || !def.shape) return null;
    if (key === null) return Object.keys(def.shape);
    const child = def.shape[String(key)];
    if (!child) return null;
    schema = child;
  }
  return null;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `a list ${JSON.stringify(value)}`;
  if (value !== null && typeof value === 'object') return 'a mapping';
  return String(value);
}
