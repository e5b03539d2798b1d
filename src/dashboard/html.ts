import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { TrqatError } from '../errors.js';
import { PACKAGE_ROOT } from '../paths.js';
import type { ViewPayload } from './view.js';

/** The page's entry module, compiled from page/main.ts by the build; html.ts bundles it with its imports. */
const PAGE_ENTRY = join(PACKAGE_ROOT, 'dist', 'dashboard', 'page', 'main.js');

/**
 * The chart library, inlined into every page: uPlot (MIT, ~50 KB) draws 100K+ points per chart
 * in a few milliseconds on a canvas, zooms and syncs cursors, and has no dependencies.
 */
function asset(specifier: string): string {
  return readFileSync(createRequire(import.meta.url).resolve(specifier), 'utf8');
}

const IMPORT = /^import \{([^}]*)\} from '(\.{1,2}\/[\w./-]+\.js)';$/gm;
const DECLARATION = /^(?:export )?(?:async )?(?:function\*?|class|const|let|var) ([\w$]+)/gm;

/**
 * The page's modules as one script: an inline script cannot fetch modules (and the page's CSP
 * forbids it), and the report must work offline. Starting from `entry`, every module it imports
 * (named imports of relative paths, as tsc emits them) comes first, once, in dependency order; the
 * import lines and `export` keywords go, so all modules share one scope. What that cannot express
 * is refused: a renamed import, another kind of import or export, or one top-level name declared
 * by two modules.
 */
export function bundlePage(entry: string = PAGE_ENTRY): string {
  const order: string[] = [];
  const code = new Map<string, string>();
  const visit = (path: string, from: string | null) => {
    if (code.has(path)) return;
    if (!existsSync(path)) throw new TrqatError(`${path}${from ? ` (imported by ${from})` : ''} is missing: build trqat first (npm run build)`);
    const text = readFileSync(path, 'utf8').replace(/^\/\/# sourceMappingURL=.*$/m, '');
    code.set(path, text);
    for (const [, names, specifier] of text.matchAll(IMPORT)) {
      if (/\bas\b/.test(names!)) throw new TrqatError(`${path}: the dashboard page's modules cannot rename imports (${names!.trim()})`);
      visit(resolve(dirname(path), specifier!), path);
    }
    order.push(path);
  };
  visit(entry, null);
  const declared = new Map<string, string>();
  const parts = order.map((path) => {
    const text = code.get(path)!.replace(IMPORT, '').replace(/^export \{\};$/gm, '');
    const left = /^(?:import |export (?:default|\{|\*))/m.exec(text);
    if (left) throw new TrqatError(`${path}: the dashboard page's modules may use named imports of relative modules and exported declarations only (found "${left[0]}")`);
    for (const [, name] of text.matchAll(DECLARATION)) {
      const other = declared.get(name!);
      if (other) throw new TrqatError(`the dashboard page's modules ${other} and ${path} both declare ${name}: rename one (they share one scope)`);
      declared.set(name!, path);
    }
    return `// ${relative(dirname(entry), path)}\n${text.replace(/^export /gm, '')}`;
  });
  return parts.join('\n');
}

let assets: { uplotJs: string; uplotCss: string; page: string } | null = null;

function loadAssets(): NonNullable<typeof assets> {
  assets ??= { uplotJs: asset('uplot/dist/uPlot.iife.min.js'), uplotCss: asset('uplot/dist/uPlot.min.css'), page: bundlePage() };
  return assets;
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { padding: 10px 16px; background: #263238; color: #fff; display: flex; gap: 16px; align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
#banner { margin: 12px 16px; padding: 8px 12px; background: #fff8e1; border: 1px solid #ffe082; }
#banner[data-kind="error"] { background: #ffebee; border-color: #ef9a9a; }
main { padding: 0 16px 32px; }
section { background: #fff; border: 1px solid #e0e0e0; border-radius: 4px; margin: 14px 0; padding: 8px 12px; }
h2 { font-size: 15px; margin: 4px 0 8px; display: flex; gap: 16px; align-items: baseline; }
h3 { font-size: 14px; margin: 6px 0; }
label.log { font-weight: normal; font-size: 13px; }
.run { margin: 6px 0 12px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; }
.status { font-size: 12px; padding: 1px 6px; border-radius: 8px; background: #e0e0e0; }
.status.running { background: #c8e6c9; } .status.completed { background: #bbdefb; } .status.failed { background: #ffcdd2; } .status.interrupted, .status.stopped, .status.not-answering { background: #ffe0b2; }
#banner[data-kind="ended"] { background: #e3f2fd; border-color: #90caf9; }
button.csv { font-size: 11px; padding: 0 6px; } label.smoothing input { vertical-align: middle; width: 240px; }
.activity { color: #6a1b9a; margin: 4px 0; }
dl { display: flex; flex-wrap: wrap; gap: 2px 16px; margin: 4px 0; }
dl.latest dd { font-variant-numeric: tabular-nums; font-weight: 600; }
dt { color: #666; } dt::after { content: ":"; } dd { margin: 0; }
dl.facts { font-size: 13px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #eee; padding: 3px 10px; text-align: right; } th:nth-child(-n+3), td:nth-child(-n+3) { text-align: left; }
.heatmap { margin: 8px 0 16px; } .heatmap canvas { display: block; cursor: crosshair; }
.scale, .readout { font-size: 12px; color: #555; }
pre { background: #f5f5f5; padding: 8px; overflow: auto; max-height: 480px; }
`;

export interface PageOptions {
  title: string;
  /** The report: the data embedded, nothing fetched. Without it the page fetches from its server. */
  payload?: ViewPayload;
}

/** The whole page as one HTML document: the chart library, the styles and the code inlined. */
export function pageHtml(options: PageOptions): string {
  const { uplotJs, uplotCss, page } = loadAssets();
  // JSON inside a script element: "<" escaped so no string in it can close the element.
  const data = options.payload ? `<script type="application/json" id="trqat-data">${JSON.stringify(options.payload).replace(/</g, '\\u003c')}</script>` : '';
  // The report forbids every network access; the live page may talk to its own server only.
  const csp = `default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:${options.payload ? '' : "; connect-src 'self'"}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(options.title)}</title>
<style>${uplotCss}${STYLE}</style></head>
<body><header><h1>trqat</h1><span>${escapeHtml(options.title)}</span></header>
<div id="banner" hidden>loading…</div>
<main id="app"></main>
<script>${uplotJs}</script>
${data}
<script type="module">${page}</script>
</body></html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
