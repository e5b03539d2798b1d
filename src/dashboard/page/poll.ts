// The live page's requests: /api/view, polled while a run goes on; a zoom fetches its range in detail.
import type { ViewPayload } from '../view.js';
import { banner, chartWidth, hooks, state, token, ui } from './dom.js';
import { render } from './render.js';

const POLL_MIN_MS = 1000;
const POLL_RETRY_MS = 5000;

/**
 * Heatmaps cost the server more than the series (every layer's bins), and a live run's server is
 * its controller: a live page asks for them when it first loads, after a zoom, and then at most
 * every 50 times what the server said they took (at every poll for a short run; every few seconds
 * for a 600K-step run of 100+ layers), so they take at most ~2% of the controller's time.
 */
const heat = { at: -Infinity, tookMs: 0, stale: true };
function heatmapsDue(): boolean {
  return heat.stale || performance.now() - heat.at >= Math.max(POLL_MIN_MS, 50 * heat.tookMs);
}

function requestUrl(since: string | null, withHeatmaps: boolean): string {
  const query = new URLSearchParams({ points: String(chartWidth()) });
  if (!withHeatmaps) query.set('heatmaps', '0');
  if (ui.zoom) {
    query.set('from', String(Math.floor(ui.zoom.min)));
    query.set('to', String(Math.ceil(ui.zoom.max)));
  }
  if (since !== null) query.set('since', since);
  if (token) query.set('token', token);
  return `api/view?${query}`;
}

let requested: string | null = null;
async function refresh(): Promise<boolean> {
  const withHeatmaps = heatmapsDue();
  const url = requestUrl(null, withHeatmaps);
  const since = url === requested ? (state.payload?.version ?? null) : null;
  const response = await fetch(requestUrl(since, withHeatmaps), { cache: 'no-store' });
  if (response.status === 204) return true;
  if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
  requested = url;
  const payload = (await response.json()) as ViewPayload;
  if (withHeatmaps) Object.assign(heat, { at: performance.now(), tookMs: payload.heatmapsMs, stale: false });
  render(payload);
  return true;
}

/** Polls while the run goes on; after the payload that says it ended, stops (the run's server closes). */
export async function poll(): Promise<void> {
  const started = performance.now();
  let delay = POLL_MIN_MS;
  try {
    await refresh();
    if (state.error !== null) {
      state.error = null;
      banner.dataset['kind'] = '';
      banner.hidden = true;
      if (state.payload) render(state.payload);
    }
    delay = Math.max(POLL_MIN_MS, 4 * (performance.now() - started));
  } catch (error) {
    state.error = String(error);
    banner.dataset['kind'] = 'error';
    banner.textContent = /^Error: 403/.test(state.error)
      ? 'The dashboard refused this page: open the URL the run printed (it holds the token).'
      : 'The dashboard is not answering: the controller stopped (the run may have ended: its report.html is in the run folder).';
    banner.hidden = false;
    if (state.payload) render(state.payload); // the badges: "not answering" instead of "running"
    delay = POLL_RETRY_MS;
  }
  if (state.payload === null || state.payload.live || state.error) window.setTimeout(() => void poll(), delay);
}

/** After a zoom: heatmaps of the new range, fetched soon (a drag fires several zooms). */
let zoomTimer: number | undefined;
hooks.refetch = () => {
  heat.stale = true;
  window.clearTimeout(zoomTimer);
  zoomTimer = window.setTimeout(() => void refresh(), 250);
};
