#!/usr/bin/env bash
# CI-only phase (run by .ci/run): builds the libFuzzer targets of tests/fuzz with clang (plus
# AddressSanitizer and UndefinedBehaviorSanitizer) into build-fuzz/ and runs each for a fixed time
# on top of its seed corpus (tests/fuzz/corpus/<parser>/ for fuzz_<parser>). New inputs that reach new code are kept
# in build-fuzz/corpus/<target>/, so the corpus grows from one CI run to the next on a machine.
#
# A crash, sanitizer report, leak, timeout or out-of-memory fails the phase: the input is
# minimised and copied to tests/fuzz/corpus/<parser>/regression-<hash>, where it stays as a
# regression input once the bug is fixed (commit it with the fix).
#
#   scripts/ci_fuzz.sh                      # every target, FUZZ_SECONDS (30) each
#   FUZZ_SECONDS=600 scripts/ci_fuzz.sh fuzz_image
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh
# clang's sanitizer and libFuzzer runtimes are in libclang-rt-14-dev and its OpenMP in
# libomp-14-dev, both only recommended by clang-14.
ensure_packages "${VQ_PACKAGES[@]}" clang-14 libclang-rt-14-dev libomp-14-dev
BUILD_DIR=${BUILD_DIR:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-30}
TARGETS=(fuzz_safetensors fuzz_safetensors_file fuzz_checkpoint fuzz_image fuzz_idx fuzz_config fuzz_flags)
(($# > 0)) && TARGETS=("$@")

start=$SECONDS
mkdir -p "$BUILD_DIR"
# Warnings are enforced by the g++ builds; clang has its own set, not made errors here.
export CCACHE_NOHASHDIR=1
CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DVQ_CUDA=OFF -DVQ_FUZZ=ON -DVQ_SANITIZE=address,undefined -DVQ_BUILD_TESTS=OFF \
  -DVQ_BUILD_BENCH=OFF > "$BUILD_DIR/configure.log" || { cat "$BUILD_DIR/configure.log"; exit 1; }
cmake --build "$BUILD_DIR" --target "${TARGETS[@]}"
echo "== fuzz: built in $((SECONDS - start)) s"

export OMP_NUM_THREADS=1
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
summary="$BUILD_DIR/fuzz_summary.md"
{
  echo "| target | seconds | runs | exec/s | coverage (edges) | features | corpus | result |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
} > "$summary"
failed=0
for target in "${TARGETS[@]}"; do
  seeds="tests/fuzz/corpus/${target#fuzz_}"
  work="$BUILD_DIR/corpus/$target"
  findings="$BUILD_DIR/findings/$target"
  mkdir -p "$work" "$findings"
  log="$BUILD_DIR/$target.log"
  # -rss_limit_mb / -malloc_limit_mb: an input that makes us allocate more than this is a finding
  # (our limits must refuse it first). -timeout: one input taking over 20 s is a hang.
  set +e
  "$BUILD_DIR/bin/$target" -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=2560 \
    -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/" \
    "$work" "$seeds" > "$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -oP 'stat::number_of_executed_units:\s*\K\d+' "$log" || echo "?")
  rate=$(grep -oP 'stat::average_exec_per_sec:\s*\K\d+' "$log" || echo "?")
  cov=$(grep -oP '\bcov: \K\d+' "$log" | tail -n 1 || echo "?")
  ft=$(grep -oP '\bft: \K\d+' "$log" | tail -n 1 || echo "?")
  corpus=$(grep -oP '\bcorp: \K\d+' "$log" | tail -n 1 || echo "?")
  result="ok"
  if [ "$rc" -ne 0 ]; then
    failed=1
    artifact=$(grep -oP 'Test unit written to \K\S+' "$log" | tail -n 1 || true)
    result="FAILED (exit $rc)"
    echo "== fuzz: $target FAILED; the end of its log:"
    tail -n 40 "$log"
    if [ -n "$artifact" ] && [ -f "$artifact" ]; then
      minimised="$artifact.min"
      "$BUILD_DIR/bin/$target" -minimize_crash=1 -max_total_time=60 \
        -exact_artifact_path="$minimised" "$artifact" > "$log.minimise" 2>&1 || true
      [ -f "$minimised" ] || minimised="$artifact"
      keep="$seeds/regression-$(sha1sum "$minimised" | cut -c1-12)"
      cp "$minimised" "$keep"
      result="$result: input kept as $keep"
      echo "== fuzz: the input ($(stat -c %s "$minimised") bytes) is kept as $keep"
    fi
  fi
  echo "| $target | $SECONDS_EACH | $runs | $rate | $cov | $ft | $corpus | $result |" >> "$summary"
  echo "== fuzz: $target: $runs runs, $rate exec/s, coverage $cov edges, $ft features: $result"
done
cat "$summary"
echo "== fuzz: done in $((SECONDS - start)) s"
exit "$failed"
