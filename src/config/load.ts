import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { withPreset } from './presets.js';
import { configSchema, type ParsedConfig } from './schema.js';
import { resolveConfig, type ResolvedConfig } from './resolve.js';
import { ConfigError } from '../errors.js';

export { ConfigError };

/** Reads a YAML or JSON config file (YAML is a superset of JSON, one parser serves both). */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  let value: unknown;
  try {
    value = parseYaml(text);
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
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => `  - ${formatIssue(issue, raw)}`);
  throw new ConfigError(`invalid ${source}:\n${lines.join('\n')}`);
}

export function loadConfig(path: string | null, overrides: readonly string[] = []): ResolvedConfig {
  const raw = path === null ? {} : readConfigFile(path);
  return resolveConfig(parseConfig(applyOverrides(raw, overrides), path ?? 'config'));
}

function formatIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const where = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
  if (issue.code === 'unrecognized_keys') {
    const allowed = allowedKeys(issue.path);
    const keys = issue.keys.map((key) => (issue.path.length > 0 ? `${issue.path.join('.')}.${key}` : key));
    return `${keys.join(', ')}: unknown setting${allowed ? ` (allowed here: ${allowed.join(', ')})` : ''}`;
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
