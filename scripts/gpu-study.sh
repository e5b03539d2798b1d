#!/usr/bin/env bash
# The 10-epoch study (study.mjs --budget full) on one GPU machine, many runs at a time, from the
# full-precision start committed in scripts/bench/results/study-full/fp.pt. Its results land in $OUT as
# they come: study-results.tar.gz (results/<run>.json, study.md, the plots; rewritten every 20 s and at
# the end, so a call stopped at its limit still brings back the runs that finished) and study.log.
# Unpack it here with: tar xzf study-results.tar.gz -C scripts/bench/results/study-full, then commit.
# Unfinished runs carried in .gpu/study-runs.tar.xz (run folders with checkpoints) are continued.
#
#   OUT=/some/dir bash scripts/gpu-study.sh                      # on a GPU machine with Node, dist/, pyzmq
#   device tool: command "bash scripts/gpu-study.sh", carry [".gpu"], timeout_s 570 (after prepare.sh)
#
# Environment: STUDY_SETTINGS (default w2a2-sgd: the setting the paper centres on, 12 runs; "all" for
# the 36), GPU_JOBS (runs at a time, default 4: one CPU core and one CUDA context each; without MPS the
# contexts time-slice the GPU, and 12 at once were slower in all than a few), STUDY_DEADLINE_S
# (stop starting and waiting after this many seconds, default 540), DATA_ROOT (Fashion-MNIST IDX files;
# default Debian's folder, else the xz copies carried in .gpu/fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=$ROOT/.gpu
CPU=${GPU_CHECK_CPU:-0}
OUT="${OUT:-$ROOT/runs/gpu-study}"
JOBS="${GPU_JOBS:-4}"   # 12 at once finished none in 400 s on an H200 (BENCHMARKS.md, "GPU"): contexts time-slice
SETTINGS="${STUDY_SETTINGS:-w2a2-sgd}"
DEADLINE="${STUDY_DEADLINE_S:-540}"
mkdir -p "$OUT"
source scripts/gpu/env.sh
WORK="${WORK:-$T/work}"
mkdir -p "$WORK/study-full"

DATA_ROOT="${DATA_ROOT:-/usr/share/datasets/fashion-mnist}"
if ! ls "$DATA_ROOT"/train-images-idx3-ubyte* >/dev/null 2>&1; then
  carried fashion-mnist "no Fashion-MNIST in DATA_ROOT=$DATA_ROOT"
  # Debian's path where it can be made (a run continued from elsewhere has it in its config), else a temporary one
  mkdir -p "$DATA_ROOT" 2>/dev/null && [ -w "$DATA_ROOT" ] || DATA_ROOT="$T/fashion-mnist"
  mkdir -p "$DATA_ROOT"
  for f in "$B"/fashion-mnist/*.xz; do
    unxz "$f" "$DATA_ROOT/$(basename "$f" .xz)"   # env.sh
  done
fi
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() or sys.argv[1] == "1" else 1)' "$CPU" \
  || { echo "gpu-study: $PY sees no CUDA device (GPU_CHECK_CPU=1 runs it on the CPU)" >&2; exit 2; }

# the committed FP start and any results already there: the study runs only what is missing
cp -r scripts/bench/results/study-full/. "$WORK/study-full/"
rm -rf "$WORK/study-full/runs"
# unfinished runs carried from another machine (tar cJf .gpu/study-runs.tar.xz -C scripts/bench/results/study-full runs/<run>): continued from their checkpoints
if [ -f "$B/study-runs.tar.xz" ]; then unpack study-runs.tar.xz "$WORK/study-full"; fi   # env.sh: no xz needed
export PYTHONPATH="$ROOT/python${PYTHONPATH:+:$PYTHONPATH}"
pack() { tar czf "$OUT/study-results.tar.gz.part" -C "$WORK/study-full" --exclude=runs . && mv "$OUT/study-results.tar.gz.part" "$OUT/study-results.tar.gz"; }
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; echo "settings $SETTINGS, $JOBS at a time"; } >"$OUT/study.log" 2>&1 || true
device=cuda; [ "$CPU" = 1 ] && device=cpu
extra=(); [ "$CPU" = 1 ] && extra=(--jobs 1)
timeout --kill-after=5 "$DEADLINE" node scripts/bench/study.mjs --budget full --out "$WORK" --device "$device" --jobs "$JOBS" \
  --threads 1 --data-root "$DATA_ROOT" --settings "$(echo "$SETTINGS" | sed 's/^all$/w2a2-sgd,w2a2-adam,w1a1-sgd/')" "${extra[@]}" >>"$OUT/study.log" 2>&1 &
study=$!
while kill -0 $study 2>/dev/null; do sleep 20; pack || true; done
status=0; wait $study || status=$?
pack
echo "gpu-study: exit $status; $(ls "$WORK/study-full/results" | wc -l) result files in $OUT/study-results.tar.gz"
tail -n 40 "$OUT/study.log"
exit "$status"
