// The controller's layers import one way (docs/architecture.md): this parses every import of src/
// and fails on a cycle, or on a layer that imports one above it.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(__dirname, '../src');

/** Bottom to top: a file may import its own layer and those below. */
const LAYERS: [string, (path: string) => boolean][] = [
  ['base', (p) => ['errors.ts', 'paths.ts', 'files.ts', 'format.ts', 'wire.ts', 'eta.ts'].includes(p)],
  ['config', (p) => p.startsWith('config/')],
  ['schedules', (p) => p.startsWith('schedules/')],
  ['bridge', (p) => p.startsWith('bridge/')],
  ['run', (p) => p.startsWith('run/')],
  ['dashboard/export', (p) => p.startsWith('dashboard/') || p.startsWith('export/')],
  ['entry', (p) => p.startsWith('entry/')],
  ['sweep', (p) => p.startsWith('sweep/')],
  ['cli', (p) => p.startsWith('cli/') || p === 'cli.ts' || p === 'index.ts'],
];

function layerOf(path: string): number {
  const index = LAYERS.findIndex(([, member]) => member(path));
  if (index < 0) throw new Error(`src/${path} belongs to no layer: add it to LAYERS in test/imports.test.ts and to docs/architecture.md`);
  return index;
}

function sources(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'types' ? [] : sources(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [relative(SRC, path)] : [];
  });
}

interface Edge {
  to: string;
  /** `import type`: gone at runtime, still a dependency of the layers. */
  typeOnly: boolean;
}

/** The relative imports (and re-exports) of a file, resolved to paths under src/. */
export function importsOf(path: string, text: string): Edge[] {
  const edges: Edge[] = [];
  const pattern = /^(?:import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?['"](\.[^'"]+)['"]/gm;
  for (const match of text.matchAll(pattern)) {
    const target = relative(SRC, resolve(SRC, dirname(path), match[2]!)).replace(/\.js$/, '.ts');
    edges.push({ to: target, typeOnly: match[1] !== undefined });
  }
  return edges;
}

const files = sources();
const graph = new Map(files.map((path) => [path, importsOf(path, readFileSync(join(SRC, path), 'utf8'))]));

/** Every cycle of runtime imports (type-only ones included when `types`), as paths. */
function cycles(types: boolean): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string) => {
    state.set(node, 'open');
    stack.push(node);
    for (const edge of graph.get(node) ?? []) {
      if (edge.typeOnly && !types) continue;
      const seen = state.get(edge.to);
      if (seen === 'open') found.push([...stack.slice(stack.indexOf(edge.to)), edge.to]);
      else if (seen === undefined && graph.has(edge.to)) visit(edge.to);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const file of files) if (!state.has(file)) visit(file);
  return found;
}

describe('the import graph of src/', () => {
  it('parses imports, re-exports and type imports', () => {
    const edges = importsOf('run/run.ts', "import type { A } from './a.js';\nimport { B } from '../bridge/b.js';\nexport { C } from './c.js';\nimport './d.js';\n");
    expect(edges).toEqual([
      { to: 'run/a.ts', typeOnly: true },
      { to: 'bridge/b.ts', typeOnly: false },
      { to: 'run/c.ts', typeOnly: false },
      { to: 'run/d.ts', typeOnly: false },
    ]);
    expect(graph.get('run/run.ts')!.length).toBeGreaterThan(5);
  });

  it('resolves every relative import to a file of src/', () => {
    const missing = [...graph].flatMap(([from, edges]) => edges.filter((e) => !graph.has(e.to)).map((e) => `${from} -> ${e.to}`));
    expect(missing).toEqual([]);
  });

  it('has no cycle, type imports included', () => {
    expect(cycles(true).map((cycle) => cycle.join(' -> '))).toEqual([]);
  });

  it('imports downward only: errors/paths/files -> config -> schedules -> bridge -> run -> dashboard/export -> entry -> sweep -> cli', () => {
    const upward = [...graph].flatMap(([from, edges]) =>
      edges.filter((e) => graph.has(e.to) && layerOf(e.to) > layerOf(from)).map((e) => `${from} (${LAYERS[layerOf(from)]![0]}) -> ${e.to} (${LAYERS[layerOf(e.to)]![0]})`),
    );
    expect(upward).toEqual([]);
  });

  it('catches a cycle and an upward import when there is one', () => {
    graph.set('config/fake.ts', [{ to: 'run/fake.ts', typeOnly: true }]);
    graph.set('run/fake.ts', [{ to: 'config/fake.ts', typeOnly: false }]);
    files.push('config/fake.ts', 'run/fake.ts');
    try {
      expect(cycles(true).map((c) => c.join(' -> '))).toContain('config/fake.ts -> run/fake.ts -> config/fake.ts');
      expect(cycles(false).some((c) => c.includes('config/fake.ts'))).toBe(false);
      expect(layerOf('run/fake.ts')).toBeGreaterThan(layerOf('config/fake.ts'));
    } finally {
      graph.delete('config/fake.ts');
      graph.delete('run/fake.ts');
      files.splice(files.indexOf('config/fake.ts'), 2);
    }
  });
});
