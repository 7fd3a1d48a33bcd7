#!/usr/bin/env bash
# One-command set-up on a fresh Debian 12 machine: installs every package the project needs
# (apt-get), a Python venv for the interop tests and the PyTorch comparison, then configures and
# builds everything into build/. Idempotent: packages already present are not reinstalled and
# the build is incremental.
#
#   scripts/setup.sh            # install + build (CUDA backend too when nvcc and cuDNN exist)
#   VQ_CUDA=OFF scripts/setup.sh
#   VQ_ONEDNN=debian scripts/setup.sh   # Debian's oneDNN 2.6 instead of 3.2 from PyPI
#   BUILD_DIR=build-debug CMAKE_BUILD_TYPE=Debug scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
phase_start=$SECONDS
phase_done() {  # prints how long the phase that just ended took
  echo "== setup: $1 in $((SECONDS - phase_start)) s"
  phase_start=$SECONDS
}
VQ_CUDA=${VQ_CUDA:-AUTO}
CMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-Release}
VQ_ONEDNN=${VQ_ONEDNN:-pypi}
case "$VQ_ONEDNN" in  # checked before anything is installed
  pypi | debian) ;;
  *) echo "setup: VQ_ONEDNN must be pypi or debian, not '$VQ_ONEDNN'" >&2; exit 2 ;;
esac

source scripts/packages.sh
ensure_packages "${VQ_PACKAGES[@]}"
phase_start=$SECONDS

# A venv on Debian's python3 (which sees python3-torch) with the safetensors package, used by the
# Python interop tests and the benchmark comparison.
VENV="$BUILD_DIR/venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import safetensors" 2>/dev/null; then
  echo "== setup: creating $VENV (safetensors from PyPI)"
  mkdir -p "$BUILD_DIR"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q safetensors
  phase_done "made the venv"
fi

# The shift-tolerant LPIPS weights (ST-LPIPS, VGG16 and AlexNet) travel inside PyPI's
# stlpips-pytorch wheel; they are installed into the venv (--no-deps: Debian's torch is used) and
# converted to safetensors under $BUILD_DIR/weights, where the programs look for them.
WEIGHTS="$BUILD_DIR/weights"
if [ ! -f "$WEIGHTS/stlpips_vgg.safetensors" ] || [ ! -f "$WEIGHTS/stlpips_alex.safetensors" ]; then
  echo "== setup: installing the ST-LPIPS weights (stlpips-pytorch 0.0.2 from PyPI, 64 MB)"
  "$VENV/bin/pip" install -q --no-deps stlpips-pytorch==0.0.2
  "$VENV/bin/python" scripts/convert_stlpips.py "$WEIGHTS"
  phase_done "installed the ST-LPIPS weights"
fi
# The standard LPIPS's lin layers travel in PyPI's lpips wheel (53 kB); scripts/convert_lpips.py
# joins them to the user's own VGG16 weights, and the tests check our network against the package.
if ! "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('lpips') is None)" 2>/dev/null; then
  echo "== setup: installing lpips 0.1.4 from PyPI into $VENV (its lin-layer weights)"
  "$VENV/bin/pip" install -q --no-deps lpips==0.1.4
  phase_done "installed lpips"
fi

# pytorch-fid, the reference our rFID is checked against (tests/fid_check.py); its own imports
# (torchvision, scipy) are Debian's packages, so --no-deps.
if ! "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('pytorch_fid') is None)" 2>/dev/null; then
  echo "== setup: installing pytorch-fid 0.3.0 from PyPI into $VENV (the rFID reference)"
  "$VENV/bin/pip" install -q --no-deps pytorch-fid==0.3.0
  phase_done "installed pytorch-fid"
fi

# oneDNN 3.2 (Intel's own build on PyPI, GNU OpenMP like ours, no other runtime) instead of
# Debian's 2.6: its bfloat16 backward convolutions are brgemm kernels, which make the --use_amp
# step 14% faster (docs/mixed_precision.md). It lands in the venv (lib/, include/,
# lib/cmake/dnnl); the binaries find it through their build-tree RPATH. VQ_ONEDNN=debian keeps
# Debian's libdnnl-dev (always installed: the GPU carry and the sanitizer builds use it).
case "$VQ_ONEDNN" in
  pypi)
    if [ ! -f "$VENV/lib/cmake/dnnl/dnnl-config.cmake" ]; then
      echo "== setup: installing oneDNN 3.2 into $VENV (onednn-cpu-gomp from PyPI, 39 MB)"
      "$VENV/bin/pip" install -q onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0
      phase_done "installed oneDNN 3.2"
    fi
    DNNL_DIR="$PWD/$VENV/lib/cmake/dnnl" ;;
  debian) DNNL_DIR="/usr/lib/$(gcc -print-multiarch)/cmake/dnnl" ;;
esac

echo "== setup: configuring ($CMAKE_BUILD_TYPE, VQ_CUDA=$VQ_CUDA, oneDNN $VQ_ONEDNN) and building in $BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$CMAKE_BUILD_TYPE" -DVQ_CUDA="$VQ_CUDA" \
  -DVQ_WERROR=ON -DVQ_PYTHON="$PWD/$VENV/bin/python" -Ddnnl_DIR="$DNNL_DIR" \
  > "$BUILD_DIR/configure.log" || { cat "$BUILD_DIR/configure.log"; exit 1; }
grep -E "CUDA backend|oneDNN" "$BUILD_DIR/configure.log" || true
cmake --build "$BUILD_DIR"
phase_done "configured and built"
echo "== setup: done; programs are in $BUILD_DIR/bin"
