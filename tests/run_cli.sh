#!/usr/bin/env bash
# Runs a program and checks both its exit code and its output (ctest's PASS_REGULAR_EXPRESSION
# alone would ignore the exit code):
#   run_cli.sh EXPECTED_EXIT_CODE EXPECTED_TEXT PROGRAM [ARGS...]
# Passes when the program exits with EXPECTED_EXIT_CODE and its stdout+stderr contains
# EXPECTED_TEXT (a fixed string, not a pattern); otherwise prints what it saw and fails.
set -u
expected_rc=$1
expected_text=$2
shift 2
output=$("$@" 2>&1)
rc=$?
ok=1
if [ "$rc" -ne "$expected_rc" ]; then
  echo "FAIL: exit code $rc, expected $expected_rc"
  ok=0
fi
if ! grep -qF -- "$expected_text" <<<"$output"; then
  echo "FAIL: the output does not contain: $expected_text"
  ok=0
fi
if [ "$ok" -eq 0 ]; then
  echo "command: $*"
  echo "output:"
  echo "$output"
  exit 1
fi
echo "OK: exit code $rc and the expected text"
