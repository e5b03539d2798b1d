#!/bin/sh
# `worker.python` for the bridge benchmark: the controller runs "$python -u -m trqat.worker";
# this runs the no-tensor worker instead, with the project's interpreter.
here=$(dirname "$0")
exec "${TRQAT_BENCH_PYTHON:-python3}" -u "$here/null_worker.py"
