# Sourced by scripts/gpu-check.sh, scripts/gpu-study.sh and scripts/gpu/profile.sh (with ROOT, B=$ROOT/.gpu and CPU set): the Python
# that has torch (PY, exported as TRQAT_PYTHON), a Node >= 20 on PATH, the built controller (dist/),
# node_modules and zmq for the worker. What the machine lacks comes from the carried .gpu
# (scripts/gpu/prepare.sh); a temporary folder $T holds what is unpacked and is removed on exit.
T=$(mktemp -d "${TMPDIR:-/tmp}/trqat-gpu.XXXXXX")
trap 'rm -rf "$T"' EXIT
# carried PATH WHY: PATH in .gpu, which a machine without Node, dist/ or pyzmq needs.
carried() {
  [ -e "$B/$1" ] && return
  echo "trqat gpu scripts: $2, and $B/$1 is missing: run bash scripts/gpu/prepare.sh on a machine with npm and apt, and carry .gpu"
  exit 2
}
# unpack TARBALL DIR: a carried .tar.xz into DIR, with Python's tarfile (the image may have no xz).
unpack() {
  "$PY" -c 'import sys, tarfile
t = tarfile.open(sys.argv[1])
t.extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))' "$B/$1" "$2"
}
# unxz FILE.xz DEST: one xz-compressed file, with xz where there is one, else Python's lzma.
unxz() {
  if command -v xz >/dev/null; then xz -dc "$1" > "$2"
  else "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}

# --- Python: the image's python3 (CPU mode: the project's .venv) ------------------------------------
if [ "$CPU" = 1 ] && [ -x .venv/bin/python ]; then PY=${TRQAT_PYTHON:-$ROOT/.venv/bin/python}; else PY=${TRQAT_PYTHON:-python3}; fi
export TRQAT_PYTHON=$PY

# --- Node: the carried binary unless a Node >= 20 is there (CPU mode: always the carried one) -------
node_ok() { command -v node >/dev/null && node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; }
if [ "$CPU" = 1 ] || ! node_ok; then
  carried node.xz "no Node >= 20 here"
  mkdir -p "$T/bin"
  unxz "$B/node.xz" "$T/bin/node"
  chmod +x "$T/bin/node"
  export PATH="$T/bin:$PATH"
fi
# The controller and its dependencies (ignored paths, so they travel in .gpu); a dev checkout keeps its own.
if [ ! -f dist/cli.js ] || [ -f dist/.from-gpu-bundle ]; then
  carried dist.tar.xz "no built controller (dist/) here"
  rm -rf dist && unpack dist.tar.xz . && touch dist/.from-gpu-bundle
fi
if [ ! -e node_modules ] || [ -L node_modules ]; then  # a dangling link is an earlier call's $T
  carried node_modules.tar.xz "no node_modules here"
  unpack node_modules.tar.xz "$T" && ln -sfn "$T/node_modules" node_modules
fi

# --- zmq: pyzmq if the image has it, else the ctypes stand-in on the carried libzmq -----------------
if [ "$CPU" = 1 ] || ! "$PY" -c 'import zmq' 2>/dev/null; then
  carried lib.tar.xz "$PY cannot import zmq"
  mkdir -p "$T/lib" "$T/carried"
  unpack lib.tar.xz "$T/carried"
  system_libs=$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null | awk '{print $1}' || true)
  for f in "$T"/carried/lib/*; do  # only what the system lacks, so that no other program sees a second copy
    name=$(basename "$f")
    if [ "$CPU" = 1 ] || ! grep -qxF "$name" <<<"$system_libs"; then ln -s "$f" "$T/lib/$name"; fi
  done
  export LD_LIBRARY_PATH="$T/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PYTHONPATH="$ROOT/scripts/gpu/zmq_shim${PYTHONPATH:+:$PYTHONPATH}"
fi

