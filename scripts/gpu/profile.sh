#!/usr/bin/env bash
# Where a step's host time goes on a GPU: cProfile of the worker (a real `trqat train`) and of
# plain_loop.py on the same ResNet-20 config (CIFAR-sized, batch 128, bf16, channels_last, synthetic
# data), the 25 functions with the most own time each and trqat's own step functions by cumulative time, to
# $OUT/profile.txt (the raw profiles: $OUT/profiles.tar.gz). About 40 s.
# On a CPU (GPU_CHECK_CPU=1) with a small PROFILE_BATCH (e.g. 2) the step is host-bound as on a GPU:
# the worker's host work per step shows against the plain loop's without one.
#   device tool: command "bash scripts/gpu/profile.sh", carry [".gpu"]  (after scripts/gpu/prepare.sh)
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
B=$ROOT/.gpu
CPU=${GPU_CHECK_CPU:-0}
OUT="${OUT:-$ROOT/runs/gpu-profile}"
mkdir -p "$OUT"
source scripts/gpu/env.sh
device=cuda; amp=bf16; [ "$CPU" = 1 ] && device=cpu amp=off
# on a CPU (GPU_CHECK_CPU=1), a host-bound step as on a GPU by default: batch 2
if [ "$CPU" = 1 ]; then steps=${PROFILE_STEPS:-100} batch=${PROFILE_BATCH:-2}; else steps=${PROFILE_STEPS:-200} batch=${PROFILE_BATCH:-128}; fi
set -- model.name=resnet20 mode=tr data.name=synthetic data.synthetic.image_size=32 data.synthetic.channels=3 \
  data.synthetic.train_size=512 data.synthetic.test_size=128 data.batch_size=$batch data.augment=false \
  train.steps=$steps train.eval_every=0 train.checkpoint_every=0 worker.device=$device worker.amp=$amp worker.channels_last=true
node scripts/bench/trqat_run.mjs --dump-config "$T/config.json" -- "$@"
# the worker under cProfile: a stand-in interpreter for `python -u -m trqat.worker`
cat > "$T/py" <<WRAP
#!/usr/bin/env bash
if [ "\$1" = "-u" ] && [ "\$2" = "-m" ] && [ "\$3" = "trqat.worker" ]; then shift 3; exec "$PY" -u -m cProfile -o "$T/worker.prof" -m trqat.worker "\$@"; fi
exec "$PY" "\$@"
WRAP
chmod +x "$T/py"
export PYTHONPATH="$ROOT/python${PYTHONPATH:+:$PYTHONPATH}"
TRQAT_PYTHON="$T/py" node scripts/bench/trqat_run.mjs --warmup 20 -- "$@" out_dir="$T/runs" >"$T/trqat.json"
(cd scripts/bench && "$PY" -m cProfile -o "$T/plain.prof" plain_loop.py "$T/config.json" --steps "$steps" --warmup 20 >"$T/plain.json")
"$PY" - "$T" "$batch" >"$OUT/profile.txt" <<'PYEOF'
import io, json, pstats, sys
t = sys.argv[1]
trqat = json.loads(open(f"{t}/trqat.json").read().strip().splitlines()[-1])
plain = json.loads(open(f"{t}/plain.json").read().strip().splitlines()[-1])
print(f"ResNet-20 W2A2, batch {sys.argv[2]}, steady state: trqat {trqat['mean_step_s'] * 1000:.2f} ms/step, plain {sum(plain['step_s']) / len(plain['step_s']) * 1000:.2f} ms/step (both under cProfile)")
for name in ("worker", "plain"):
    s = io.StringIO()
    pstats.Stats(f"{t}/{name}.prof", stream=s).sort_stats("tottime").print_stats(25)
    print(f"\n== {name}: the 25 functions with the most own time\n{s.getvalue()}")
# the worker's own per-step work, by cumulative time: what trqat adds to a step is in here
s = io.StringIO()
pstats.Stats(f"{t}/worker.prof", stream=s).sort_stats("cumtime").print_stats(r"trqat/(worker|trainer|transport|transitions|diagnostics|protocol|json_schema|groups)\.py", 30)
print(f"\n== worker: trqat's own step functions, by cumulative time\n{s.getvalue()}")
PYEOF
# the raw profiles, for pstats or snakeviz afterwards (one file: a device call brings back at most 8)
"$PY" -c 'import sys, tarfile
with tarfile.open(sys.argv[1], "w:gz") as t:
    for name in ("worker.prof", "plain.prof"): t.add(f"{sys.argv[2]}/{name}", name)' "$OUT/profiles.tar.gz" "$T"
head -3 "$OUT/profile.txt"
