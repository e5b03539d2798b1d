// The page from a payload: the runs' headers, the tools, the charts, the heatmaps, the details.
import type uPlot from 'uplot';
import type { ViewPayload } from '../view.js';
import { LINE_CHARTS, drawLineChart, redrawLineCharts } from './charts.js';
import { banner, CHART_HEIGHT, chartWidth, color, el, replace, section, state, table, ui, UPlot } from './dom.js';
import { drawHeatmap } from './heatmap.js';
import { renderLayer } from './layer.js';

/** What the banner says once the run has ended, by its final status. */
const ENDED: Record<string, string> = {
  completed: 'The run completed.',
  failed: 'The run failed.',
  stopped: 'The run was stopped.',
};

/** A run's status as the page shows it: the payload's, or "not answering" for a live run whose server went away. */
function shownStatus(status: string): string {
  return status === 'running' && state.error !== null ? 'not answering' : status;
}

function renderHeader(payload: ViewPayload): void {
  const host = section('runs', payload.runs.length > 1 ? 'Runs' : 'Run');
  payload.runs.forEach((run, r) => {
    const box = el('div', { class: 'run', id: `run-${r}` });
    const title = el('h3');
    const status = shownStatus(run.status);
    title.append(el('span', { class: 'swatch', style: `background:${color(r)}` }), `${run.name} `, el('span', { class: `status ${status.replace(/ /g, '-')}` }, status));
    box.append(title);
    if (run.activity) box.append(el('div', { class: 'activity' }, run.activity));
    const latest = el('dl', { class: 'latest' });
    for (const [label, value] of run.latestText) latest.append(el('dt', {}, label), el('dd', { 'data-metric': label }, value));
    box.append(latest);
    const facts = el('dl', { class: 'facts' });
    for (const [label, value] of run.facts) facts.append(el('dt', {}, label), el('dd', {}, value));
    box.append(facts);
    replace(host, `run-${r}`, box);
  });
  const compare = section('compare', 'Comparison');
  replace(compare, 'compare-table', table(payload.compareHeaders, payload.runs.map((run) => run.compareText), 'compare-table'));
}

/** The tools every chart shares: TensorBoard's smoothing slider. */
function renderTools(): void {
  if (document.getElementById('section-tools')) return;
  const host = section('tools', 'Settings');
  const label = el('label', { class: 'smoothing' }, 'smoothing (k, loss, accuracy, throughput) ');
  const slider = el('input', { type: 'range', id: 'smoothing', min: '0', max: '0.99', step: '0.01', value: String(ui.smoothing) });
  const shown = el('output', { id: 'smoothing-value' }, ui.smoothing.toFixed(2));
  slider.addEventListener('input', () => {
    ui.smoothing = Number(slider.value);
    shown.textContent = ui.smoothing.toFixed(2);
    redrawLineCharts();
  });
  label.append(slider, ' ', shown);
  host.append(label);
}

/** The banner: the phase a run starts with, how a run ended, or a server that stopped answering. */
function renderBanner(payload: ViewPayload): void {
  if (payload.live) state.sawLive = true;
  state.ended = state.sawLive && !payload.live;
  if (state.ended) {
    const texts = payload.runs.map((run) => `${payload.runs.length > 1 ? `${run.name}: ` : ''}${ENDED[run.status] ?? `The run ended (${run.status}).`}`);
    const failed = payload.runs.find((run) => run.status === 'failed');
    const error = failed?.facts.find(([label]) => label === 'error')?.[1];
    banner.textContent = `${texts.join(' ')}${error ? ` ${error}` : ''} Its dashboard has closed; report.html in the run folder keeps this page.`;
    banner.dataset['kind'] = failed ? 'error' : 'ended';
    banner.hidden = false;
  } else if (payload.runs.every((run) => run.series.step.length === 0 && run.evals.step.length === 0)) {
    banner.textContent = payload.runs.some((run) => run.activity) ? payload.runs.map((run) => run.activity).filter(Boolean).join('; ') : 'waiting for the first step…';
    banner.dataset['kind'] = '';
    banner.hidden = false;
  } else if (banner.dataset['kind'] !== 'error') {
    banner.hidden = true;
  }
}

function renderLayers(payload: ViewPayload): void {
  const any = payload.runs.some((run) => run.heatmaps && [run.heatmaps.rate, run.heatmaps.K, run.heatmaps.U].some((h) => h && h.x.length > 0));
  if (!any && !document.getElementById('section-layers')) return;
  const host = section('layers', 'Per layer');
  payload.runs.forEach((run, r) => {
    if (!run.heatmaps) return; // not in this payload: the page keeps the last ones
    const prefix = payload.runs.length > 1 ? `${run.name}: ` : '';
    const layers = run.layers;
    drawHeatmap(host, `heat-rate-${r}`, { title: `${prefix}transition rate per layer (transitions / weights per step)`, rowLabels: layers, log: true, unit: 'per step' }, run.heatmaps.rate);
    drawHeatmap(host, `heat-K-${r}`, { title: `${prefix}K per layer (per-layer scope)`, rowLabels: layers, log: true, unit: '' }, run.heatmaps.K);
    drawHeatmap(host, `heat-U-${r}`, { title: `${prefix}U per layer (per-layer scope)`, rowLabels: layers, log: true, unit: '' }, run.heatmaps.U);
  });
}

function renderDistance(payload: ViewPayload): void {
  if (!payload.runs.some((run) => run.dist)) return;
  const host = section('distance', 'Distance of the weights to their nearest transition point (in quantization steps)');
  // The newest measurement of each run: the share of all quantized weights per distance bin.
  const bins = payload.distBins;
  const x = bins.map((_, i) => i);
  const withDist = payload.runs.filter((run) => run.dist);
  const data = [x, ...withDist.map((run) => run.dist!.fractions)] as uPlot.AlignedData;
  const chart = state.charts['dist'];
  if (chart && chart.series.length === data.length) chart.setData(data);
  else {
    chart?.destroy();
    const holder = host.querySelector<HTMLElement>('.chart') ?? host.appendChild(el('div', { class: 'chart', id: 'chart-dist' }));
    state.charts['dist'] = new UPlot(
      {
        width: chartWidth(),
        height: CHART_HEIGHT,
        // Shares start at 0: bars from the axis would exaggerate small differences otherwise.
        scales: { x: { time: false, range: [-0.5, bins.length - 0.5] }, y: { range: (_u, _min, max) => [0, Math.max(max, 1e-9) * 1.05] } },
        series: [
          { label: 'distance', value: (_u, v) => bins[v] ?? '-' },
          ...withDist.map((run) => ({
            label: `${withDist.length > 1 ? `${run.name}: ` : ''}share of weights`,
            stroke: color(payload.runs.indexOf(run)),
            fill: color(payload.runs.indexOf(run), 0.15),
            width: 1.5,
            paths: UPlot.paths.bars!({ size: [0.7, Infinity] }),
            points: { show: false },
          })),
        ],
        axes: [{ label: 'distance to the nearest transition point (quantization steps)', values: (_u, splits) => splits.map((i) => bins[i] ?? '') }, { size: 60 }],
        cursor: { drag: { x: false, y: false } },
      },
      data,
      holder,
    );
  }
  const means = el('p', { id: 'dist-means' }, withDist.map((run) => `${run.name}: measured at step ${run.dist!.step}, mean distance ${run.dist!.mean}`).join('; '));
  replace(host, 'dist-means', means);
  payload.runs.forEach((run, r) => {
    if (!run.heatmaps) return;
    const prefix = payload.runs.length > 1 ? `${run.name}: ` : '';
    drawHeatmap(host, `heat-distHist-${r}`, { title: `${prefix}share of weights per distance bin over the run`, rowLabels: bins, log: false, unit: 'share of weights' }, run.heatmaps.distHist);
    drawHeatmap(host, `heat-distMean-${r}`, { title: `${prefix}mean distance per layer`, rowLabels: run.layers, log: false, unit: 'quantization steps' }, run.heatmaps.distMean);
  });
}

function renderDetails(payload: ViewPayload): void {
  const host = section('details', 'Summary and config');
  payload.runs.forEach((run, r) => {
    const details = el('details', { id: `details-${r}` });
    details.append(el('summary', {}, `${run.name}: summary.json and config`));
    if (run.summary) details.append(el('pre', { class: 'summary' }, JSON.stringify(run.summary, null, 2)));
    if (run.config) details.append(el('pre', { class: 'config' }, run.config));
    const open = document.getElementById(`details-${r}`) as HTMLDetailsElement | null;
    if (open?.open) details.open = true;
    replace(host, `details-${r}`, details);
  });
}

export function render(payload: ViewPayload): void {
  const started = performance.now();
  state.payload = payload;
  renderBanner(payload);
  renderHeader(payload);
  renderTools();
  for (const spec of LINE_CHARTS) drawLineChart(spec, payload.runs);
  renderLayers(payload);
  renderLayer(payload);
  renderDistance(payload);
  renderDetails(payload);
  state.renders++;
  state.renderMs = performance.now() - started;
  document.body.dataset['renders'] = String(state.renders);
}
