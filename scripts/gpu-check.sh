#!/usr/bin/env bash
# The GPU check (issue 8), on a machine with one NVIDIA GPU. Writes to $OUT, each file as its part completes:
#   gpu.md              the GPU, driver, torch, Node, which zmq; each part's exit status and seconds
#   pytest-cuda.txt     python3 -m pytest python/tests -m cuda
#   bench-resnet18.md   ResNet-18, ImageNet-shaped synthetic data (224x224, batch 256, bf16, channels_last):
#                       plain PyTorch QAT loop vs trqat: images/s, the ratio (goal <= 1.02), peak GPU memory
#   bench-resnet20.md   CIFAR-sized ResNet-20 (32x32, batch 128): steps/s plain vs trqat and the ratio
#   log.txt             everything the parts printed
# Each part has its own time limit, so the whole fits in 8 minutes and a part that runs over leaves the
# others' files (and the benchmark tables the repetitions it finished). Data-parallel ranks need two
# GPUs: not checked here (the CPU benchmark scripts/bench/ddp.mjs covers 2 gloo ranks).
#
# First, on a CPU machine with npm and apt: bash scripts/gpu/prepare.sh  (fills .gpu/, git-ignored, packed:
# Node, node_modules, dist/, libzmq; that machine has no Node, no pyzmq and no network). Then one call
# of the device tool:
#   run  command: "bash scripts/gpu-check.sh"   carry: [".gpu"]   timeout_s: 540
# On a GPU machine that has Node >= 20, the built controller and pyzmq, .gpu is not needed:
#   npm run build && OUT=runs/gpu-check bash scripts/gpu-check.sh
# GPU_CHECK_CPU=1 runs the same script on the CPU at tiny sizes, with the carried Node and the zmq
# stand-in forced (bash scripts/gpu/prepare.sh --simulate does so in a copy of what a call sends).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=$ROOT/.gpu
CPU=${GPU_CHECK_CPU:-0}
OUT=${OUT:-$ROOT/runs/gpu-check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
TEE=$!
export PYTHONUNBUFFERED=1

if [ "$CPU" = 1 ]; then
  BUDGET=--tiny LIMIT_PYTEST=300 LIMIT_RESNET18=300 LIMIT_RESNET20=300 LIMIT_SHARE=300   # the shared CPU is slow, and nothing is measured
else
  BUDGET=--quick LIMIT_PYTEST=120 LIMIT_RESNET18=230 LIMIT_RESNET20=120 LIMIT_SHARE=90  # 560 s of parts
fi
# scripts/gpu/session.sh shortens the parts to leave time for the study: LIMIT_*_S and REPS from the environment
LIMIT_PYTEST=${GPU_LIMIT_PYTEST_S:-$LIMIT_PYTEST} LIMIT_RESNET18=${GPU_LIMIT_RESNET18_S:-$LIMIT_RESNET18}
LIMIT_RESNET20=${GPU_LIMIT_RESNET20_S:-$LIMIT_RESNET20} LIMIT_SHARE=${GPU_LIMIT_SHARE_S:-$LIMIT_SHARE}
REPS=${GPU_REPS:+--reps $GPU_REPS}

# Python, Node, the controller and zmq: from the machine where it has them, else from the carried .gpu
source scripts/gpu/env.sh

# --- a: the machine ----------------------------------------------------------------------------------
{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  if command -v nvidia-smi >/dev/null; then
    echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
  else
    echo "- GPU: none (GPU_CHECK_CPU=$CPU)"
  fi
  echo "- $("$PY" -c 'import sys, torch; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")')"
  echo "- Node $(node --version) at $(command -v node)"
  echo "- zmq: $("$PY" -c 'import zmq; print(zmq.__file__, "libzmq", zmq.zmq_version())' 2>&1 | tail -1)"
  echo "- CPU: $(nproc) cores; budget $BUDGET"
  echo "- data-parallel ranks (2 GPUs): skipped, this machine has one GPU"
  echo
  echo "| part | exit | seconds | file |"
  echo "|---|---|---|---|"
} > "$OUT/gpu.md"
cat "$OUT/gpu.md"

# part NAME LIMIT_S FILE COMMAND...: runs COMMAND under its time limit, never stops the script, and adds a row to gpu.md.
part() {
  local name=$1 limit=$2 file=$3 start=$SECONDS rc=0
  shift 3
  echo
  echo "== $name (at most $limit s) -> $file"
  timeout --kill-after=10 "$limit" "$@" || rc=$?
  local status=$rc
  if [ $rc = 124 ] || [ $rc = 137 ]; then status="$rc (stopped at its limit)"; fi
  [ -f "$OUT/$file" ] || file="$file (not written)"
  echo "| $name | $status | $((SECONDS - start)) | $file |" >> "$OUT/gpu.md"
  echo "== $name: exit $status after $((SECONDS - start)) s"
}
# --- b, c, d -------------------------------------------------------------------------------------------
part "pytest -m cuda" $LIMIT_PYTEST pytest-cuda.txt \
  bash -c '"$0" -m pytest python/tests -m cuda -v -rfEs -p no:cacheprovider > "$1" 2>&1' "$PY" "$OUT/pytest-cuda.txt"
cat "$OUT/pytest-cuda.txt"
part "ResNet-18, ImageNet-shaped: plain vs trqat" $LIMIT_RESNET18 bench-resnet18.md \
  node scripts/bench/gpu.mjs $BUDGET $REPS --only resnet18 --md "$OUT/bench-resnet18.md" --out "$T/bench"
part "ResNet-20, CIFAR-sized: plain vs trqat" $LIMIT_RESNET20 bench-resnet20.md \
  node scripts/bench/gpu.mjs $BUDGET $REPS --only resnet20 --md "$OUT/bench-resnet20.md" --out "$T/bench"
part "counting share and processes sharing the GPU" $LIMIT_SHARE gpu-share.md \
  node scripts/bench/gpu-share.mjs $BUDGET --md "$OUT/gpu-share.md" --out "$T/share"
echo
cat "$OUT/gpu.md"
exec >&- 2>&-
wait $TEE  # log.txt complete before the call returns $OUT
