import type { ResolvedConfig } from './resolve.js';

/** Settings a resume may change: where and how the workers run, never the schedule. */
export const RESUMABLE_PREFIXES = ['worker.', 'bridge.', 'dashboard.', 'train.log_every', 'train.keep_checkpoints', 'train.keep_best', 'train.diagnostics_every'] as const;

export function isResumable(key: string): boolean {
  return RESUMABLE_PREFIXES.some((prefix) => key === prefix || key.startsWith(prefix));
}

/** `key (before -> after)` for every setting outside RESUMABLE_PREFIXES that differs between two configs. */
export function scheduleChanges(before: ResolvedConfig, after: ResolvedConfig): string[] {
  const changes: string[] = [];
  const walk = (a: unknown, b: unknown, path: string): void => {
    if (path && isResumable(path)) return;
    const objects = a !== null && b !== null && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b);
    if (objects) {
      const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
      for (const key of keys) walk((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], path ? `${path}.${key}` : key);
    } else if (JSON.stringify(a) !== JSON.stringify(b)) {
      changes.push(`${path} (${JSON.stringify(a) ?? 'unset'} -> ${JSON.stringify(b) ?? 'unset'})`);
    }
  };
  walk(before, after, '');
  return changes;
}
