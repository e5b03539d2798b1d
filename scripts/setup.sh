#!/usr/bin/env bash
# Sets up trqat on a new machine: Node dependencies, the build, and the Python environment in .venv.
# With conda on PATH: .venv is the conda environment from environment.yml (GPU machines).
# Otherwise (Debian, our CPU machines and CI): Debian's PyTorch packages and a venv that sees them.
# Set TRQAT_SETUP_PYTHON=debian or =conda to choose explicitly.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the dashboard's browser tests (playwright-core drives the system browser; nothing is downloaded)
DEBIAN_PACKAGES=(python3 python3-venv python3-torch python3-torchvision python3-zmq python3-msgpack python3-pytest python3-hypothesis python3-numpy dataset-fashion-mnist chromium)

say() { printf '\n== %s\n' "$*"; }

setup_node() {
  say "Node dependencies"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
  npm run build
}

setup_conda() {
  say "Python environment from environment.yml (conda) in .venv"
  if [ -x .venv/bin/python ] && [ -d .venv/conda-meta ]; then
    conda env update --prefix .venv --file environment.yml --prune
  else
    rm -rf .venv
    conda env create --prefix .venv --file environment.yml
  fi
}

setup_debian() {
  say "Debian packages: ${DEBIAN_PACKAGES[*]}"
  local missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "all installed"
  fi
  say "Python virtual environment .venv (sees Debian's packages)"
  if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
  fi
  # Offline-safe: no build isolation (it would download setuptools), no dependency resolution.
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation --no-index -e python/
}

setup_node
case "${TRQAT_SETUP_PYTHON:-auto}" in
  conda) setup_conda ;;
  debian) setup_debian ;;
  auto) if command -v conda >/dev/null 2>&1; then setup_conda; else setup_debian; fi ;;
  *) echo "TRQAT_SETUP_PYTHON must be auto, conda or debian, got '${TRQAT_SETUP_PYTHON}'" >&2; exit 2 ;;
esac

say "Check"
.venv/bin/python -c "import torch, zmq, msgpack, trqat; print(f'trqat {trqat.__version__}, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}')"
echo "setup done: run the default job with 'npx trqat train', the tests with 'npm test'"
