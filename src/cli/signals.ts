/**
 * The CLI's two-stage stop: the first Ctrl-C (or SIGTERM) aborts the returned signal so the run can
 * stop cleanly; a second one calls `now` (the run writes what it has and kills its processes) and
 * exits with 130. `release` removes the handlers. The library never installs process handlers.
 */
export function stopOnSignals(messages: { first: string; second: string }, now: () => void = () => undefined): { signal: AbortSignal; release(): void } {
  const stop = new AbortController();
  const onSignal = () => {
    if (stop.signal.aborted) {
      console.error(`\n${messages.second}`);
      now();
      process.exit(130);
    }
    console.error(`\n${messages.first}`);
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: stop.signal,
    release: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
