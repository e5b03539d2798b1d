import { closeSync, existsSync, fstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve as resolvePath } from 'node:path';
import { isScalar, LineCounter, parse as parseYaml, parseDocument, visit } from 'yaml';
import { z } from 'zod';
import { MAX_MESSAGE_BYTES, pack } from '../wire.js';
import { withPreset } from './presets.js';
import { configSchema, isPluginRef, PLUGIN_KEYS, PLUGIN_MODULE_HINT, type ParsedConfig } from './schema.js';
import { resolveConfig, type ResolvedConfig } from './resolve.js';
import { ConfigError } from '../errors.js';
import { PACKAGE_ROOT } from '../paths.js';

export { ConfigError };

/**
 * The largest config file, and the most --set text, that is read at all. A config holds settings;
 * the run's config also travels to every rank in one message, which has a size limit of its own.
 */
export const MAX_CONFIG_BYTES = 1 << 20;
/**
 * The most keys a config file may hold (all mappings together). YAML is parsed in linear time, but
 * slowly (over a second per MiB on a small machine): a file of tens of thousands of keys is refused
 * before it is parsed.
 */
export const MAX_CONFIG_KEYS = 10_000;
/** What marks a mapping key in YAML or JSON: a colon followed by a blank or the line's end, or a quoted key's `":`. */
const KEY_MARK = /"?:(?=\s|$)|":/gm;

/** Errors list this many problems, and this many unknown keys of one mapping, then count the rest. */
const MAX_LISTED = 20;

const mib = (bytes: number) => `${(bytes / (1 << 20)).toFixed(bytes < 1 << 20 ? 2 : 1)} MiB`;

/** Reads a YAML or JSON config file (YAML is a superset of JSON, one parser serves both). */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readLimited(path, MAX_CONFIG_BYTES);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new ConfigError(missingConfig(path));
    throw error instanceof ConfigError ? error : new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  // Counted from the text, before the slow parse; an exact count follows in parseText.
  const marks = text.match(KEY_MARK)?.length ?? 0;
  if (marks > MAX_CONFIG_KEYS) throw tooManyKeys(path, `about ${marks.toLocaleString('en-US')}`);
  let value: unknown;
  try {
    value = parseText(text, path);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`config file ${path} is not valid YAML/JSON: ${(error as Error).message}`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(`config file ${path} must hold a mapping of settings, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** The shipped configs (configs/ of the package): the message for a config file that does not exist names them. */
const SHIPPED_CONFIGS = join(PACKAGE_ROOT, 'configs');

function missingConfig(path: string): string {
  const shipped = existsSync(SHIPPED_CONFIGS) ? readdirSync(SHIPPED_CONFIGS).filter((name) => /\.(ya?ml|json)$/.test(name)).sort() : [];
  const folder = relative(process.cwd(), SHIPPED_CONFIGS);
  const where = folder === '' || folder.startsWith('..') || isAbsolute(folder) ? SHIPPED_CONFIGS : folder;
  const guess = nearest(basename(path), shipped);
  return (
    `config file ${path} does not exist` +
    (guess ? `; did you mean ${join(where, guess)}?` : '') +
    (shipped.length > 0 ? `\nthe shipped configs, in ${where}/: ${shipped.join(', ')}` : '') +
    '\n(or name no config file: the defaults, changed with --set key=value)'
  );
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
export function parseConfig(raw: unknown, source = 'config', baseDir = process.cwd()): ParsedConfig {
  const result = configSchema.safeParse(withPreset(raw));
  if (!result.success) {
    const { issues } = result.error;
    const lines = issues.slice(0, MAX_LISTED).map((issue) => `  - ${formatIssue(issue, raw)}`);
    if (issues.length > MAX_LISTED) lines.push(`  - and ${issues.length - MAX_LISTED} more problems`);
    throw new ConfigError(`invalid ${source}:\n${lines.join('\n')}`);
  }
  checkMessageSize(result.data, source);
  return withAbsoluteModules(result.data, baseDir);
}

/** A plug-in's `module` relative to `baseDir` (the config file's folder), made absolute: config.json and a resume find the same file. */
function withAbsoluteModules(config: ParsedConfig, baseDir: string): ParsedConfig {
  for (const [section, key] of PLUGIN_KEYS) {
    const ref = (config[section] as Record<string, unknown>)[key];
    if (isPluginRef(ref) && !isAbsolute(ref.module)) ref.module = resolvePath(baseDir, ref.module);
  }
  return config;
}

/** Room the welcome message needs beside the config: the envelope (bridge/protocol.ts), the checkpoint path, what resolveConfig adds. */
const WELCOME_MARGIN = 64 * 1024;

/** Every rank receives the config in one message (the welcome): a config that cannot fit is refused here, not at startup. */
function checkMessageSize(config: ParsedConfig, source: string): void {
  let bytes: number;
  try {
    bytes = pack({ config, resume: null }).length;
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
  return resolveConfig(parseConfig(applyOverrides(raw, overrides), path ?? 'config', path === null ? process.cwd() : dirname(resolvePath(path))));
}

function formatIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const where = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
  const value = valueAt(raw, issue.path);
  if (issue.code === 'invalid_union' && issue.errors.length > 0) {
    // A key that takes a built-in or a plug-in (`{module: ...}`, the first option): the problems of the form the value meant.
    const branch = isPluginMapping(value) ? issue.errors[0]! : issue.errors[issue.errors.length - 1]!;
    return branch.map((inner) => formatIssue({ ...inner, path: [...issue.path, ...inner.path] } as z.core.$ZodIssue, raw)).join('\n  - ');
  }
  if (issue.code === 'unrecognized_keys' && issue.keys.includes('module') && isPluginKey(issue.path)) {
    return `${where}.module: ${PLUGIN_MODULE_HINT}; got ${describe(valueAt(value, ['module']))}`;
  }
  if (issue.code === 'unrecognized_keys') {
    const allowed = allowedKeys(issue.path);
    const prefix = issue.path.length > 0 ? `${issue.path.join('.')}.` : '';
    const keys = issue.keys.slice(0, MAX_LISTED);
    const more = issue.keys.length > MAX_LISTED ? ` and ${issue.keys.length - MAX_LISTED} more` : '';
    const guesses = keys.flatMap((key) => {
      const guess = suggestKey(issue.path, key, allowed ?? []);
      return guess ? [keys.length === 1 ? guess : `${guess} for ${prefix}${key}`] : [];
    });
    const hint = guesses.length > 0 ? `; did you mean ${guesses.join(', ')}?` : '';
    return `${keys.map((key) => prefix + key).join(', ')}${more}: unknown setting${hint}${allowed ? ` (allowed here: ${allowed.join(', ')})` : ''}`;
  }
  if (issue.code === 'invalid_key') {
    // A record's key (quant.layer_bits): say which key and why, not zod's "Invalid key in record".
    const parent = issue.path.slice(0, -1).join('.');
    return `${parent}: key ${JSON.stringify(String(issue.path[issue.path.length - 1]))} ${issue.issues[0]?.message ?? issue.message}`;
  }
  const got = value === undefined ? 'it is missing (required)' : `got ${describe(value)}`;
  return `${where}: ${issue.message}; ${got}`;
}

const isPluginMapping = (value: unknown): boolean => value !== null && typeof value === 'object' && 'module' in value;
const isPluginKey = (path: readonly PropertyKey[]): boolean => PLUGIN_KEYS.some((key) => key.join('.') === path.join('.'));

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
function parseText(text: string, path: string): unknown {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { uniqueKeys: false, lineCounter });
  if (document.errors.length > 0) throw document.errors[0]!;
  let duplicate: string | null = null;
  let keys = 0;
  visit(document, {
    Map(_, map) {
      keys += map.items.length;
      if (keys > MAX_CONFIG_KEYS) throw tooManyKeys(path, `over ${MAX_CONFIG_KEYS.toLocaleString('en-US')}`);
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

function tooManyKeys(path: string, count: string): ConfigError {
  return new ConfigError(
    `config file ${path} holds ${count} keys; the limit is ${MAX_CONFIG_KEYS.toLocaleString('en-US')} (a config holds settings: put large tables in files the config names, and read them in your factory)`,
  );
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let node = raw;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/** The keys of an object schema, looking through default/prefault/nullable wrappers; null for anything else. */
function shapeOf(schema: z.core.$ZodType): Record<string, z.core.$ZodType> | null {
  let def = schema._zod.def as { type: string; innerType?: z.core.$ZodType; shape?: Record<string, z.core.$ZodType> };
  while (def.innerType) def = def.innerType._zod.def as typeof def;
  return def.type === 'object' && def.shape ? def.shape : null;
}

function allowedKeys(path: readonly PropertyKey[]): string[] | null {
  let shape = shapeOf(configSchema);
  for (const key of path) {
    const child = shape?.[String(key)];
    shape = child ? shapeOf(child) : null;
  }
  return shape ? Object.keys(shape) : null;
}

/** Every setting's dotted path (sections included), for suggestions. */
function allPaths(schema: z.core.$ZodType = configSchema, prefix = ''): string[] {
  return Object.entries(shapeOf(schema) ?? {}).flatMap(([key, child]) => [prefix + key, ...allPaths(child, `${prefix}${key}.`)]);
}

/**
 * The setting an unknown key most likely meant, as a dotted path: the same name in another section
 * (`lr` -> optimizer.lr), else the nearest allowed key here (`stesp` -> train.steps), else the
 * nearest setting anywhere; null when nothing is near.
 */
function suggestKey(path: readonly PropertyKey[], key: string, allowed: readonly string[]): string | null {
  const paths = allPaths();
  const leaf = (p: string) => p.slice(p.lastIndexOf('.') + 1);
  const elsewhere = paths.filter((p) => leaf(p) === key);
  if (elsewhere.length > 0) return elsewhere.join(' or ');
  const prefix = path.length > 0 ? `${path.join('.')}.` : '';
  const here = nearest(key, allowed);
  if (here !== null) return prefix + here;
  const anywhere = nearest(key, paths.map(leaf));
  return anywhere === null ? null : paths.filter((p) => leaf(p) === anywhere).join(' or ');
}

/** The candidate nearest to `word` by edit distance (a swap of two letters counts one), if within a third of its length. */
export function nearest(word: string, candidates: readonly string[]): string | null {
  const limit = Math.max(1, Math.floor(word.length / 3));
  let best: string | null = null;
  let bestDistance = limit + 1;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = rows[i]!;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, rows[i - 2]![j - 2]! + 1);
    }
  }
  return rows[a.length]![b.length]!;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `a list ${JSON.stringify(value)}`;
  if (value !== null && typeof value === 'object') return 'a mapping';
  return String(value);
}
