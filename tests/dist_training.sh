#!/usr/bin/env bash
# Data-parallel training against one process (ctest runs it; needs MPI and the venv's Python):
#   1. the improved preset's quantizer (code sampling, the entropy term, epoch-end resets) with
#      the discriminator from step 0 (its BatchNorm synchronised, the adaptive weight): 2 ranks
#      with a global batch of 16 against 1 process with 16;
#   2. k-means initialisation, dead-code restarts every step and CVQ re-seeding, argmin codes;
#   3. FSQ (its usage statistics);
#   4. a run stopped after epoch 1 in 1 process and resumed as 2 ranks, against run 1;
#   5. a rank that throws, and a rank killed mid-run: the job ends within seconds, non-zero,
#      naming the failing rank, and a checkpoint written before still loads;
#   6. Ctrl-C: every rank stops at the same step and rank 0 saves once.
#
#   tests/dist_training.sh BIN_DIR PYTHON
set -u
BIN=$1
PYTHON=$2
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_WAIT_POLICY=PASSIVE
MPIRUN=(mpirun --oversubscribe --bind-to none -np 2)
failures=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# train NAME CONFIG [mpirun...] -- [extra flags]: one training run into $W/NAME.
train() {
  local name=$1 config=$2
  shift 2
  local launcher=()
  while [ "$1" != "--" ]; do launcher+=("$1"); shift; done
  shift
  if ! "${launcher[@]}" "$BIN/train_vqvae_improved" --config "$config" --model_dir "$W/$name" \
    --sample_dir "$W/$name/samples" --model_name m "$@" > "$W/$name.log" 2>&1; then
    fail "training $name failed:"
    tail -n 20 "$W/$name.log"
  fi
}

same_run() {
  echo "== $1 against $2"
  "$PYTHON" "$HERE/dist_compare.py" "$W/$1" "$W/$2" || fail "$2 is not the run $1 is"
}

# The tiny model every run here trains, and the settings runs 1-3 share.
MODEL='"model": {"resolution": 16, "ch": 32, "ch_mult": [1, 2], "z_channels": 32, "embed_dim": 8}'
SHORT='"epochs": 2, "steps_per_epoch": 3, "batch_size": 16, "val_limit": 40, "num_samples": 4,
              "log_every": 1, "val_stlpips_images": 0'
cat > "$W/improved.json" <<JSON
{$MODEL,
 "quantizer": {"n_embed": 16}, "loss": {"disc_start": 0, "disc_ndf": 8, "disc_layers": 2},
 "training": {$SHORT}}
JSON
train one "$W/improved.json" -- --num_threads 1
train two "$W/improved.json" "${MPIRUN[@]}" --
same_run one two
grep -q "processes:  2 processes (MPI" "$W/two.log" || fail "the 2-rank run's header does not say so"
# Each step all-reduces at least the generator's gradients (687,657 float32 values here).
"$PYTHON" -c "import json, sys; s = json.load(open(sys.argv[1])); \
assert s['processes'] == 2 and s['collective_mb_per_step'] > 4 * 687657 / 1e6, s" \
  "$W/two/m.summary.json" || fail "the 2-rank run's summary does not count its traffic"

cat > "$W/kmeans.json" <<JSON
{$MODEL,
 "quantizer": {"n_embed": 16, "init": "kmeans", "dead_code_reset": "step", "cvq_rate": 0.5,
               "temperature": 0, "dead_code_threshold": 2},
 "loss": {"disc_start": 100},
 "training": {$SHORT}}
JSON
train kmeans_one "$W/kmeans.json" -- --num_threads 1
train kmeans_two "$W/kmeans.json" "${MPIRUN[@]}" --
same_run kmeans_one kmeans_two

cat > "$W/fsq.json" <<JSON
{$MODEL, "quantizer": {"kind": "fsq", "fsq_levels": [4, 4, 3]}, "training": {$SHORT}}
JSON
train fsq_one "$W/fsq.json" -- --num_threads 1
train fsq_two "$W/fsq.json" "${MPIRUN[@]}" --
same_run fsq_one fsq_two

# Resumed with another number of ranks: the first epoch as one process, the second as two.
train resumed "$W/improved.json" -- --num_threads 1 --max_steps 3
cp "$W/resumed/m.last.safetensors" "$W/resumed/epoch1.safetensors"
if ! "${MPIRUN[@]}" "$BIN/train_vqvae_improved" --resume "$W/resumed/m.last.safetensors" \
  --max_steps 6 > "$W/resumed2.log" 2>&1; then
  fail "resuming as 2 ranks failed:"
  tail -n 20 "$W/resumed2.log"
fi
same_run one resumed

# A rank that fails alone (here rank 0, the only one that writes checkpoints, finds a folder where
# its checkpoint should go) stops the whole job at once, naming itself; the other rank is waiting
# in a collective and would otherwise wait forever.
mkdir -p "$W/failing/m.last.safetensors"
start=$SECONDS
timeout 120 "${MPIRUN[@]}" "$BIN/train_vqvae_improved" --config "$W/improved.json" \
  --model_dir "$W/failing" --sample_dir "$W/failing/samples" --model_name m > "$W/failing.log" 2>&1
rc=$?
echo "== rank 0 failed: the job ended after $((SECONDS - start)) s with exit $rc"
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "the job with a failing rank exited $rc"
grep -q "rank 0 of 2: train_vqvae_improved: error: " "$W/failing.log" \
  || { fail "the failing rank's message does not name it:"; tail -n 5 "$W/failing.log"; }

# A rank killed mid-run stops the job (mpirun notices and ends the others) within seconds.
cat > "$W/long.json" <<JSON
{$MODEL,
 "quantizer": {"n_embed": 16},
 "training": {"epochs": 100, "steps_per_epoch": 2, "batch_size": 8, "val_limit": 8,
              "num_samples": 2, "val_stlpips_images": 0}}
JSON
# start_long NAME: a long 2-rank run into $W/NAME in the background ($launcher: its mpirun),
# returning once its first checkpoint exists (or after 60 s).
start_long() {
  "${MPIRUN[@]}" "$BIN/train_vqvae_improved" --config "$W/long.json" --model_dir "$W/$1" \
    --sample_dir "$W/$1/samples" --model_name m > "$W/$1.log" 2>&1 &
  launcher=$!
  for _ in $(seq 600); do
    [ -f "$W/$1/m.last.safetensors" ] && break
    sleep 0.1
  done
}
start_long killed
victim=$(pgrep -P "$launcher" | tail -n 1)
if [ -z "$victim" ] || [ ! -f "$W/killed/m.last.safetensors" ]; then
  fail "the run to kill did not start or wrote no checkpoint"
else
  kill -9 "$victim"
  start=$SECONDS
  wait "$launcher"
  rc=$?
  echo "== killed one rank: the job ended after $((SECONDS - start)) s with exit $rc"
  [ "$rc" -ne 0 ] || fail "the job with a killed rank exited 0"
  [ $((SECONDS - start)) -le 30 ] || fail "the job with a killed rank took $((SECONDS - start)) s to end"
  "$BIN/vq_inspect" "$W/killed/m.last.safetensors" --summary > /dev/null \
    || fail "the checkpoint written before the kill does not load"
fi

# Ctrl-C: mpirun passes the stop to every rank (as SIGTERM); they stop at the same step and rank 0
# saves once.
start_long stopped
kill -INT "$launcher"
wait "$launcher"
stops=$(tr '\r' '\n' < "$W/stopped.log" | grep -c "^interrupted at step")
echo "== Ctrl-C: $(tr '\r' '\n' < "$W/stopped.log" | grep "^interrupted at step")"
[ "$stops" -eq 1 ] || fail "Ctrl-C: $stops 'interrupted' reports instead of 1"
"$BIN/vq_inspect" "$W/stopped/m.last.safetensors" --summary > /dev/null \
  || fail "the checkpoint saved on Ctrl-C does not load"

if [ "$failures" -gt 0 ]; then
  echo "$failures failures"
  exit 1
fi
echo "data-parallel runs: all as one process"
