// A small line-plot writer (SVG), so the study draws its plots without matplotlib or any other dependency.

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

const fmt = (v) => (v === 0 ? '0' : Math.abs(v) >= 1e4 || Math.abs(v) < 1e-2 ? v.toExponential(0) : String(Number(v.toPrecision(3))));
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');

/**
 * series: [{name, xs, ys, color?, dash?}]; logY plots log10 of positive values.
 * Returns the SVG text.
 */
export function linePlot({ title, xlabel = 'step', ylabel = '', series, logY = false, width = 720, height = 400 }) {
  const m = { l: 70, r: 160, t: 36, b: 46 };
  const W = width - m.l - m.r;
  const H = height - m.t - m.b;
  const tf = (y) => (logY ? (y > 0 ? Math.log10(y) : null) : y);
  const pts = series.map((s) => s.xs.map((x, i) => [x, s.ys[i] == null || !Number.isFinite(s.ys[i]) ? null : tf(s.ys[i])]));
  const all = pts.flat().filter(([, y]) => y != null);
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const x0 = Math.min(...xs, 0);
  const x1 = Math.max(...xs, 1);
  let y0 = Math.min(...ys);
  let y1 = Math.max(...ys);
  if (!Number.isFinite(y0)) [y0, y1] = [0, 1];
  if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
  if (!logY && y0 > 0 && y0 < 0.3 * y1) y0 = 0;
  const px = (x) => m.l + ((x - x0) / (x1 - x0)) * W;
  const py = (y) => m.t + H - ((y - y0) / (y1 - y0)) * H;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${m.l + W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<rect x="${m.l}" y="${m.t}" width="${W}" height="${H}" fill="none" stroke="#333"/>`,
  ];
  for (const t of niceTicks(x0, x1)) {
    out.push(`<line x1="${px(t)}" y1="${m.t + H}" x2="${px(t)}" y2="${m.t + H + 4}" stroke="#333"/>`);
    out.push(`<text x="${px(t)}" y="${m.t + H + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  const yt = logY ? niceTicks(Math.floor(y0), Math.ceil(y1), Math.max(1, Math.ceil(y1) - Math.floor(y0))).filter((t) => Number.isInteger(t) && t >= y0 - 1e-9 && t <= y1 + 1e-9) : niceTicks(y0, y1);
  for (const t of yt) {
    out.push(`<line x1="${m.l}" y1="${py(t)}" x2="${m.l + W}" y2="${py(t)}" stroke="#ddd"/>`);
    out.push(`<text x="${m.l - 6}" y="${py(t) + 4}" text-anchor="end">${logY ? `1e${t}` : fmt(t)}</text>`);
  }
  out.push(`<text x="${m.l + W / 2}" y="${height - 8}" text-anchor="middle">${esc(xlabel)}</text>`);
  out.push(`<text transform="translate(16 ${m.t + H / 2}) rotate(-90)" text-anchor="middle">${esc(ylabel)}${logY ? ' (log)' : ''}</text>`);
  series.forEach((s, i) => {
    const color = s.color ?? COLORS[i % COLORS.length];
    let d = '';
    let pen = false;
    for (const [x, y] of pts[i]) {
      if (y == null) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${px(x).toFixed(1)} ${py(Math.min(y1, Math.max(y0, y))).toFixed(1)}`;
      pen = true;
    }
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"${s.dash ? ' stroke-dasharray="5 3"' : ''}/>`);
    const ly = m.t + 14 + i * 18;
    out.push(`<line x1="${m.l + W + 10}" y1="${ly - 4}" x2="${m.l + W + 34}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${s.dash ? ' stroke-dasharray="5 3"' : ''}/>`);
    out.push(`<text x="${m.l + W + 40}" y="${ly}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
