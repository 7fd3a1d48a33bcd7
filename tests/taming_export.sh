#!/usr/bin/env bash
# scripts/export_taming.py end to end: trains a tiny model (attention at 16x16, two levels, the EMA
# codebook; seconds), reconstructs 8 images with vq_reconstruct, and hands both to
# tests/taming_export_check.py, which loads the export into taming's module structure.
#
#   tests/taming_export.sh BIN_DIR PYTHON     # PYTHON: one with torch and yaml (Debian's)
set -u
BIN=$1
PY=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
cat > "$W/tiny.json" <<'JSON'
{"model": {"resolution": 32, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1,
           "attn_resolutions": [16], "z_channels": 32, "embed_dim": 8},
 "quantizer": {"n_embed": 16}, "loss": {"disc_start": 100, "disc_ndf": 8, "disc_layers": 1},
 "training": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8, "val_limit": 8,
              "num_samples": 1}}
JSON
run() {
  "$@" > "$W/step.log" 2>&1 || { echo "FAIL: $*"; cat "$W/step.log"; exit 1; }
}
run "$BIN/train_vqvae_improved" --config "$W/tiny.json" --model_dir "$W/run" --model_name tiny
run "$BIN/vq_reconstruct" --model_path "$W/run/tiny.safetensors" --num 8 --save_tensors \
  --stlpips_images 0 --output_dir "$W/rec"
mkdir -p "$W/export"
"$PY" "$(dirname "$0")/taming_export_check.py" "$W/run/tiny.safetensors" \
  "$W/rec/reconstructions.safetensors" "$W/export" "$W/run/tiny.last.safetensors"
