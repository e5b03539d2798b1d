// One chosen layer over the run: its transition rate k, and its K and U (per-layer scope), as lines.
import type uPlot from 'uplot';
import type { ViewPayload } from '../view.js';
import { tickLabels } from '../ticks.js';
import { CHART_HEIGHT, chartWidth, color, el, fullRange, section, state, ui, UPlot, type PlottedSeries } from './dom.js';

/** The heatmaps a layer's lines come from (the page keeps the newest it fetched), with their look. */
const LAYER_SERIES = [
  { heatmap: 'rate', metric: 'k', label: 'k', dash: undefined, width: 1 },
  { heatmap: 'K', metric: 'K', label: 'K', dash: undefined, width: 2 },
  { heatmap: 'U', metric: 'U', label: 'U', dash: [6, 4], width: 1.5 },
] as const;

export function renderLayer(payload: ViewPayload): void {
  const names = payload.runs[0]?.layers ?? [];
  if (names.length === 0 || !Object.keys(state.heatmaps).some((id) => id.startsWith('heat-rate-'))) return;
  const host = section('layer', 'One layer: its transition rate k, K and U (per-layer scope; the heatmaps\u2019 bins)');
  let select = host.querySelector<HTMLSelectElement>('select#layer-select');
  if (!select) {
    select = el('select', { id: 'layer-select' });
    select.addEventListener('change', () => {
      ui.layer = Number(select!.value);
      if (state.payload) renderLayer(state.payload);
    });
    host.querySelector('h2')!.append(select);
  }
  if (select.options.length !== names.length) {
    select.replaceChildren(...names.map((name, i) => el('option', { value: String(i) }, `${i}: ${name}`)));
    select.value = String(Math.min(ui.layer, names.length - 1));
  }
  const layer = names[Number(select.value)] ?? names[0]!;
  const plotted: PlottedSeries[] = [];
  const looks: uPlot.Series[] = [{ label: 'step' }];
  const tables: uPlot.AlignedData[] = [];
  payload.runs.forEach((run, r) => {
    const row = run.layers.indexOf(layer);
    if (row < 0) return;
    for (const s of LAYER_SERIES) {
      const data = state.heatmaps[`heat-${s.heatmap}-${r}`]?.data;
      const values = data?.values[row];
      if (!data || !values || !values.some((v) => v !== null)) continue;
      const label = payload.runs.length > 1 ? `${run.name}: ${s.label}` : s.label;
      plotted.push({ run: r, metric: s.metric, label });
      looks.push({ label, stroke: color(r), width: s.width, ...(s.dash ? { dash: [...s.dash] } : {}), spanGaps: true, points: { show: false } });
      tables.push([data.x, values.map((v) => (v !== null && v > 0 ? v : null))] as uPlot.AlignedData);
    }
  });
  if (tables.length === 0) return;
  const data = tables.length === 1 ? tables[0]! : UPlot.join(tables);
  const key = `layer`;
  const existing = state.charts[key];
  const same = existing && (state.plotted[key] ?? []).map((p) => p.label).join('\n') === plotted.map((p) => p.label).join('\n');
  state.plotted[key] = plotted;
  if (existing && same) existing.setData(data, false);
  else {
    existing?.destroy();
    const holder = host.querySelector<HTMLElement>('.chart') ?? host.appendChild(el('div', { class: 'chart', id: 'chart-layer' }));
    state.charts[key] = new UPlot(
      {
        width: chartWidth(),
        height: CHART_HEIGHT,
        series: looks,
        scales: { x: { time: false }, y: { distr: 3 } },
        axes: [{ label: 'step' }, { size: 70, values: tickLabels }],
        cursor: { sync: { key: 'trqat-steps' }, drag: { x: false, y: false } },
      },
      data,
      holder,
    );
  }
  const range = ui.zoom ?? fullRange();
  if (range) state.charts[key]!.setScale('x', range);
}
