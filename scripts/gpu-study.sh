#!/usr/bin/env bash
# The whole 10-epoch study (study.mjs --budget full: the FP model, then 36 QAT runs) on one GPU
# machine, many runs at a time, its report in $OUT: study.md, study.log and study-full.tar.gz (the
# per-run results and the plots; the run folders stay in $WORK).
#
# Needs, and checks first (naming what is missing): node >= 20 with this checkout's node_modules and
# dist/ (npm ci && npm run build), a Python with torch and CUDA, pyzmq and msgpack (TRQAT_PYTHON, else
# .venv/bin/python, else python3), and the Fashion-MNIST IDX files in DATA_ROOT.
# Sized for one H200 within 10 minutes (GPU_JOBS=12 runs at a time, one CPU thread each): an
# estimate from the CPU step counts, not yet measured on a GPU.
#
#   OUT=/some/dir DATA_ROOT=/path/to/fashion-mnist bash scripts/gpu-study.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu-study}"
WORK="${WORK:-/tmp/trqat-gpu-study}"
JOBS="${GPU_JOBS:-12}"
DATA_ROOT="${DATA_ROOT:-/usr/share/datasets/fashion-mnist}"
if [ -n "${TRQAT_PYTHON:-}" ]; then PY="$TRQAT_PYTHON"; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi

missing=()
command -v node >/dev/null || missing+=("node >= 20 on PATH")
[ -f dist/index.js ] || missing+=("dist/ (npm run build)")
[ -d node_modules/zeromq ] || missing+=("node_modules (npm ci)")
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null || missing+=("torch with CUDA for $PY")
"$PY" -c 'import zmq, msgpack' 2>/dev/null || missing+=("pyzmq and msgpack for $PY")
ls "$DATA_ROOT"/train-images-idx3-ubyte* >/dev/null 2>&1 || missing+=("Fashion-MNIST IDX files in DATA_ROOT=$DATA_ROOT")
if [ ${#missing[@]} -gt 0 ]; then
  echo "gpu-study: cannot start, missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 2
fi

mkdir -p "$OUT" "$WORK"
export TRQAT_PYTHON="$PY" PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >"$OUT/study.log" 2>&1 || true
status=0
node scripts/bench/study.mjs --budget full --out "$WORK" --device cuda --jobs "$JOBS" --threads 1 --data-root "$DATA_ROOT" >>"$OUT/study.log" 2>&1 || status=$?
cp "$WORK/study-full/study.md" "$OUT/" 2>/dev/null || true
tar czf "$OUT/study-full.tar.gz" -C "$WORK" --exclude=runs study-full 2>/dev/null || true
tail -n 60 "$OUT/study.log"
exit "$status"
