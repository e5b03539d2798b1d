// The dashboard page, in the browser: draws a ViewPayload (view.ts) with uPlot and canvas heatmaps.
// Live (served by server.ts): fetches /api/view and polls while a run goes on (poll.ts). Report
// (report.ts): the payload is embedded, nothing is fetched. html.ts bundles this entry and the
// modules it imports into the page's one inline script.
import type { ViewPayload } from '../view.js';
import { CHART_HEIGHT, chartWidth, embedded, hooks, state } from './dom.js';
import { poll } from './poll.js';
import { render } from './render.js';

window.addEventListener('resize', () => {
  for (const chart of Object.values(state.charts)) chart.setSize({ width: chartWidth(), height: CHART_HEIGHT });
  for (const heatmap of Object.values(state.heatmaps)) heatmap.draw();
});

if (embedded) {
  hooks.refetch = () => undefined; // a report has everything: a zoom fetches nothing
  render(JSON.parse(embedded.textContent ?? '{}') as ViewPayload);
} else void poll();
