#!/usr/bin/env bash
# Starts the reproduction study in the background, detached from this shell (it survives the
# session), at low priority and with one torch thread, logging to <out>/study-<budget>/runs/study.log.
# It is resumable: run this again after a stop and it continues with the runs that have no result.
#
#   bash scripts/bench/study-background.sh [budget=full] [extra study.mjs options]
#   tail -f scripts/bench/results/study-full/runs/study.log      # progress
#   node scripts/bench/study.mjs --budget full --out scripts/bench/results --plan   # runs done so far
set -euo pipefail
cd "$(dirname "$0")/../.."
budget="${1:-full}"
shift || true
out=scripts/bench/results
log="$out/study-$budget/runs/study.log"
mkdir -p "$(dirname "$log")"
if [ -f "$log.pid" ] && kill -0 "$(cat "$log.pid")" 2>/dev/null; then
  echo "study-background: already running (pid $(cat "$log.pid")); log: $log" >&2
  exit 1
fi
setsid nohup nice -n 10 node scripts/bench/study.mjs --budget "$budget" --out "$out" --threads 1 --jobs 1 --commit "$@" >>"$log" 2>&1 </dev/null &
echo $! >"$log.pid"
echo "study-background: started pid $!; log: $log"
