#!/usr/bin/env bash
# Everything a lent GPU machine is for, in one device call of under 10 minutes (device time is scarce:
# each machine start costs minutes): the GPU check with shortened parts (scripts/gpu-check.sh), then
# where a step's host time goes (scripts/gpu/profile.sh). $OUT receives gpu.md, pytest-cuda.txt,
# bench-resnet20.md, bench-resnet18.md, gpu-share.md, log.txt, profile.txt and profiles.tar.gz (8 files,
# the most a call brings back). The 10-epoch study is complete (36 of 36 on the CPU); to add GPU runs
# to it, call scripts/gpu-study.sh on its own.
#
#   bash scripts/gpu/prepare.sh        # here, once: fills .gpu (Node, node_modules, dist, libzmq, the data)
#   device tool: command "bash scripts/gpu/session.sh", carry [".gpu"], timeout_s 570
#
# SESSION_S (default 550) is the whole budget; the check's parts take about 250 s of it.
set -uo pipefail
cd "$(dirname "$0")/../.."
start=$SECONDS
budget=${SESSION_S:-550}
GPU_LIMIT_PYTEST_S=${GPU_LIMIT_PYTEST_S:-45} GPU_LIMIT_RESNET20_S=${GPU_LIMIT_RESNET20_S:-50} \
GPU_LIMIT_RESNET18_S=${GPU_LIMIT_RESNET18_S:-60} GPU_LIMIT_SHARE_S=${GPU_LIMIT_SHARE_S:-60} GPU_REPS=${GPU_REPS:-2} \
  bash scripts/gpu-check.sh
left=$((budget - (SECONDS - start) - 15))   # 15 s to pack and hand back
echo "== where a step's host time goes, for at most $left s"
timeout --kill-after=10 "$left" bash scripts/gpu/profile.sh
