#!/usr/bin/env bash
# CI-only phase (run by .ci/run after the README's test command): the libraries, programs and the
# whole test suite built with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/, then
# every ctest test run under them. Any report stops the test it happens in, so the phase fails.
#
# g++ builds it, as it builds the release: the sanitizers then meet the same code generation, and
# the one OpenMP runtime (libgomp) that oneDNN also uses. CPU only (no CUDA in this build).
#
#   scripts/ci_sanitize.sh          # VQ_SANITIZE_EXCLUDE='regex' skips tests by name
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh
ensure_packages "${VQ_PACKAGES[@]}"
BUILD_DIR=${BUILD_DIR:-build-asan}
start=$SECONDS
mkdir -p "$BUILD_DIR"
# -O1 -g1: the usual sanitizer build (fast to compile, line numbers in reports). ccache may reuse
# objects from another checkout of the same commit (the folder is not part of its key).
export CCACHE_NOHASHDIR=1
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVQ_CUDA=OFF \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DVQ_SANITIZE=address,undefined -DVQ_BUILD_BENCH=OFF -DVQ_WERROR=ON \
  -DVQ_PYTHON="$PWD/build/venv/bin/python" > "$BUILD_DIR/configure.log" \
  || { cat "$BUILD_DIR/configure.log"; exit 1; }
cmake --build "$BUILD_DIR"
echo "== sanitize: built in $((SECONDS - start)) s"
start=$SECONDS
# detect_leaks: LeakSanitizer too. The test programs spawn our programs (also sanitized) and
# Python (not ours, so not preloaded with the runtime: nothing to set for it).
export ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMP_WAIT_POLICY=PASSIVE
exclude=()
[ -n "${VQ_SANITIZE_EXCLUDE:-}" ] && exclude=(-E "$VQ_SANITIZE_EXCLUDE")
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 --timeout 900 "${exclude[@]}" \
  | tee "$BUILD_DIR/ctest.log"
echo "== sanitize: tests in $((SECONDS - start)) s"
# A report that did not fail its test (it should always fail it) still fails the phase.
if grep -lE "ERROR: (Address|Leak)Sanitizer|runtime error:" -r "$BUILD_DIR/Testing/Temporary" \
  > /dev/null 2>&1; then
  echo "== sanitize: sanitizer reports found in the test logs"
  exit 1
fi
