// Number and time formats shared by the CLI's lines and the dashboard (import-free: any layer may use them).

/**
 * What each phase of a `progress` report is doing, as printed (a phase not listed prints its own
 * name). Start-up: the worker starts (Python imports torch), joins its ranks, loads the data,
 * builds the model, loads a checkpoint. Export (python/trqat/export.py, verify-onnx.ts): its steps.
 */
export const PHASES: Record<string, string> = {
  worker: 'starting the worker (Python, importing torch)',
  ranks: 'waiting for every rank (torch.distributed)',
  data: 'loading data',
  model: 'building the model',
  checkpoint: 'loading the checkpoint',
  eval: 'evaluating',
  convert: 'converting to integer levels',
  'test-set': 'reading the test set',
  write: 'writing the file',
  verify: 'checking the file against the checkpoint (test samples)',
  onnx: 'checking the ONNX graph in ONNX Runtime (test samples)',
};

/**
 * "evaluating: 12,500/50,000 (25%), ETA 41s"; without a total, the count alone; a phase just
 * announced (0 done, no total), its name alone: "building the model…".
 */
export function progressText(phase: string, done: number, total: number | null, etaS: number | null = null): string {
  const what = PHASES[phase] ?? phase;
  const n = (value: number) => value.toLocaleString('en-US');
  if ((total === null || total <= 0) && done === 0) return `${what}…`;
  if (total === null || total <= 0) return `${what}: ${n(done)}`;
  const eta = etaS === null || done >= total ? '' : `, ETA ${duration(etaS)}`;
  return `${what}: ${n(done)}/${n(total)} (${Math.floor((100 * Math.min(done, total)) / total)}%)${eta}`;
}

/** 1.23e-3; '-' for null. */
export function sci(value: number | null): string {
  if (value === null) return '-';
  return value === 0 ? '0' : value.toExponential(2);
}

export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
