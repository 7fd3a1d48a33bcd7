#!/usr/bin/env bash
# Regenerates the reference pages that the programs themselves know, so they cannot drift from
# the code:
#   docs/reference.md     every program's --help, and the presets' values (--print_config)
#   docs/reliability.md   the table of hostile inputs and what the user sees (tests/hostile_inputs.sh)
#
#   scripts/gen_docs.sh [BIN_DIR]           rewrites both (BIN_DIR: build/bin; about a minute)
#   scripts/gen_docs.sh --check [BIN_DIR]   fails when docs/reference.md is out of date (ctest
#                                           docs.reference_up_to_date; cli.hostile_inputs checks
#                                           the other table)
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = --check ]; then
  check=1
  shift
fi
bin=${1:-build/bin}

reference() {
  echo "# Reference"
  echo
  echo "Generated from the programs by \`scripts/gen_docs.sh\`; do not edit by hand (the test"
  echo "\`docs.reference_up_to_date\` fails when this page and the programs disagree)."
  for program in train_vqvae_improved codebook_utilization_check vq_reconstruct vq_encode \
    vq_decode vq_plot_metrics vq_inspect; do
    echo
    echo "## \`$program\`"
    echo
    echo '```text'
    "$bin/$program" --help
    echo '```'
  done
  echo
  echo "## Presets"
  echo
  echo "\`--preset\` sets these values (every other key is the same in all three; \`--print_config"
  echo "--preset NAME\` prints them all). \`--model_config seed256\` replaces the \`model\` group."
  echo
  local dir
  dir=$(mktemp -d)
  for preset in improved original best; do
    "$bin/train_vqvae_improved" --preset "$preset" --print_config > "$dir/$preset.json"
  done
  python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
presets = ["improved", "original", "best"]
configs = {p: json.load(open(f"{d}/{p}.json")) for p in presets}
print("| key | " + " | ".join(presets) + " |")
print("|---|" + "---|" * len(presets))
for group in configs["improved"]:
    for key in configs["improved"][group]:
        values = [configs[p][group][key] for p in presets]
        if any(v != values[0] for v in values):
            print(f"| `{group}.{key}` | " + " | ".join(f"`{json.dumps(v)}`" for v in values) + " |")
PY
  rm -rf "$dir"
}

if [ "$check" -eq 1 ]; then
  if ! diff -u docs/reference.md <(reference); then
    echo "docs/reference.md is out of date: run scripts/gen_docs.sh"
    exit 1
  fi
  exit 0
fi
reference > docs/reference.md
echo "wrote docs/reference.md"
table=$(bash tests/hostile_inputs.sh "$bin" --markdown | awk '/^\| kind \| input/ {on = 1} on')
python3 - docs/reliability.md "$table" <<'PY'
import sys
path, table = sys.argv[1], sys.argv[2].strip("\n").split("\n")
lines = open(path).read().split("\n")
start = next(i for i, l in enumerate(lines) if l.startswith("| kind | input"))
end = start
while end < len(lines) and lines[end].startswith("|"):
    end += 1
lines[start:end] = table
open(path, "w").write("\n".join(lines))
PY
echo "wrote the hostile-input table of docs/reliability.md"
