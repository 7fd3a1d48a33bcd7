#!/usr/bin/env bash
# Set-up (scripts/setup.sh) and the whole test suite. This is the README's test command and what
# .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
# Two test programs run at once, each with 2 OpenMP threads: with libgomp's default spin-waiting
# the four threads on 2 cores starve each other (one slow test took 25x longer); passive waiting
# gives the cores to whoever has work.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
start=$SECONDS
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2
echo "== tests: $((SECONDS - start)) s"
