#!/usr/bin/env bash
# One command on a new machine: set everything up, then run the default job
# (TR-scheduled W2A2 ResNet-20 on Fashion-MNIST). Extra arguments go to "trqat train".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/cli.js train "$@"
