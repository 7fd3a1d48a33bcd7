#!/usr/bin/env bash
# The hostile-input corpus: damaged checkpoints, images, data folders, config files and flags,
# each given to the real programs. Every case must end with the expected exit code and a message
# containing the expected text, within the time limit: never a crash, a hang or silence.
#
#   tests/hostile_inputs.sh BIN_DIR                    # runs every case
#   tests/hostile_inputs.sh BIN_DIR --markdown         # also prints the table of cases
#   tests/hostile_inputs.sh BIN_DIR --check-doc FILE   # and fails when FILE's table differs
#                                                      # (ctest: docs/reliability.md; the fix is
#                                                      # scripts/gen_docs.sh)
#
# Needs python3 (to edit files byte by byte) and the Fashion-MNIST package.
set -u
BIN=$1
MODE=${2:-}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
TRAIN="$BIN/train_vqvae_improved"
CHECK="$BIN/codebook_utilization_check"
failures=0
count=0
rows=()

# check CATEGORY "INPUT" EXPECTED_RC "EXPECTED TEXT" COMMAND...
check() {
  local category=$1 input=$2 want_rc=$3 want_text=$4
  shift 4
  count=$((count + 1))
  local out rc
  out=$(timeout 300 "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want_rc" ] || ! grep -qF -- "$want_text" <<<"$out"; then
    failures=$((failures + 1))
    echo "FAIL [$category] $input: exit $rc (expected $want_rc), expected text: $want_text"
    echo "  command: $*"
    tail -n 5 <<<"$out" | sed 's/^/  | /'
    return
  fi
  # The line the user sees, with this run's temporary folder shortened.
  local line
  line=$(grep -F -- "$want_text" <<<"$out" | head -n 1 | sed "s|$W/|…/|g; s|$W|…|g")
  ((${#line} > 260)) && line="${line:0:257}..."
  rows+=("| $category | $input | exit $rc: \`${line//|/\\|}\` |")
}

# python3 -c with the file to edit: replaces bytes of a safetensors file's header or data.
edit() { /usr/bin/python3 - "$@"; }

# ---- fixtures: a tiny model trained for 2 steps (seconds), plus a best-model file --------------
cat > "$W/tiny.json" <<'EOF'
{"model": {"resolution": 8, "ch": 32, "ch_mult": [1], "z_channels": 32, "embed_dim": 4},
 "quantizer": {"n_embed": 8}, "loss": {"disc_start": 1, "disc_ndf": 8, "disc_layers": 1},
 "training": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "val_limit": 8,
              "num_samples": 1}}
EOF
if ! "$TRAIN" --config "$W/tiny.json" --model_dir "$W/run" --model_name tiny --sample_dir "$W/run" \
  > "$W/fixture.log" 2>&1; then
  echo "FAIL: could not train the fixture model:"
  cat "$W/fixture.log"
  exit 1
fi
LAST="$W/run/tiny.last.safetensors"
BEST="$W/run/tiny.safetensors"
RUN=(--model_dir "$W/out" --sample_dir "$W/out" --max_steps 1 --val_limit 4 --num_samples 1)
# Eight small grey PNGs: a folder of good images for the runs and tools below.
mkdir -p "$W/good"
edit "$W/good" <<'EOF'
import struct, sys, zlib
def png(w, h, seed):
    def chunk(k, d): return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))
    rows = b"".join(b"\0" + bytes((x * 9 + y * 5 + seed) % 256 for x in range(w)) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
for i in range(8): open(f"{sys.argv[1]}/img{i}.png", "wb").write(png(12, 10, i * 31))
EOF

# ---- checkpoints ----------------------------------------------------------------------------
check checkpoint "missing file" 1 "model file '$W/none.safetensors' does not exist" \
  "$CHECK" --model_path "$W/none.safetensors"
: > "$W/empty.safetensors"
check checkpoint "empty file (0 bytes)" 1 "truncated: 0 bytes" "$CHECK" --model_path "$W/empty.safetensors"
head -c 5 "$BEST" > "$W/cut5.safetensors"
check checkpoint "cut inside the 8-byte length" 1 "truncated: 5 bytes" "$CHECK" --model_path "$W/cut5.safetensors"
head -c 300 "$BEST" > "$W/cut300.safetensors"
check checkpoint "cut inside the JSON header" 1 "is larger than the 292 bytes that follow it" \
  "$CHECK" --model_path "$W/cut300.safetensors"
head -c -1000 "$BEST" > "$W/cutdata.safetensors"
check checkpoint "cut inside the tensor data" 1 "outside the data section" \
  "$CHECK" --model_path "$W/cutdata.safetensors"
cp "$BEST" "$W/long.safetensors" && printf 'junk' >> "$W/long.safetensors"
check checkpoint "4 bytes appended" 1 "4 trailing bytes after the last tensor" \
  "$CHECK" --model_path "$W/long.safetensors"
mkdir -p "$W/folder.safetensors"
check checkpoint "a folder named like a model" 1 "is not a regular file" \
  "$CHECK" --model_path "$W/folder.safetensors"
printf 'this is a text file, not a model\n' > "$W/text.safetensors"
check checkpoint "a text file" 1 "above the limit of 100000000 bytes (kMaxSafetensorsHeaderBytes)" \
  "$CHECK" --model_path "$W/text.safetensors"
edit "$BEST" "$W/badjson.safetensors" <<'EOF'
import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[8] = ord("["); open(sys.argv[2], "wb").write(b)
EOF
check checkpoint "JSON header damaged" 1 "(header): malformed JSON" "$CHECK" --model_path "$W/badjson.safetensors"
edit "$BEST" "$W/nan.safetensors" <<'EOF'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read()); n = struct.unpack("<Q", b[:8])[0]
e = json.loads(b[8:8 + n])["quantize.embedding.weight"]
struct.pack_into("<f", b, 8 + n + e["data_offsets"][0] + 4, float("nan"))
open(sys.argv[2], "wb").write(b)
EOF
check checkpoint "NaN in the codebook (bit flip)" 1 \
  "tensor 'quantize.embedding.weight' holds 1 non-finite values (NaN or infinity)" \
  "$CHECK" --model_path "$W/nan.safetensors"
check checkpoint "NaN in the codebook, --allow_nonfinite" 0 \
  "warning: --allow_nonfinite: NaN or infinite weights are not refused" \
  "$CHECK" --model_path "$W/nan.safetensors" --allow_nonfinite --limit 4 \
  --data_dir "$W/good" --output_dir "$W/nan_out"
check checkpoint "NaN in the codebook, vq_reconstruct" 1 "holds 1 non-finite values" \
  "$BIN/vq_reconstruct" --model_path "$W/nan.safetensors" --output_dir "$W/rec"
check checkpoint "--fid_weights given a model checkpoint" 1 \
  "is not the FID Inception network (its metadata lacks vqgan.network = fid-inception-v3)" \
  "$CHECK" --model_path "$BEST" --fid_weights "$BEST" --data_dir "$W/good" --output_dir "$W/fid_out"
head -c 1000 "$BEST" > "$W/cut_fid.safetensors"
check checkpoint "--fid_weights file cut short" 1 "cut_fid.safetensors: the header length" \
  "$BIN/vq_reconstruct" --model_path "$BEST" --fid_weights "$W/cut_fid.safetensors" \
  --data_dir "$W/good" --output_dir "$W/rec"
edit "$LAST" "$W/nan.last.safetensors" <<'EOF'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read()); n = struct.unpack("<Q", b[:8])[0]
e = json.loads(b[8:8 + n])["optimizer.generator.exp_avg.decoder.conv_out.weight"]
struct.pack_into("<f", b, 8 + n + e["data_offsets"][0], float("inf"))
open(sys.argv[2], "wb").write(b)
EOF
check checkpoint "infinity in an optimizer moment, --resume" 1 \
  "tensor 'optimizer.generator.exp_avg.decoder.conv_out.weight' holds 1 non-finite values" \
  "$TRAIN" --resume "$W/nan.last.safetensors"
# Rewrites a checkpoint's metadata: metadata KEY VALUE-PYTHON-EXPRESSION (of `old`, the text).
metadata() {
  edit "$1" "$2" "$3" "$4" <<'EOF'
import json, re, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); old = h["__metadata__"][sys.argv[3]]
h["__metadata__"][sys.argv[3]] = eval(sys.argv[4])
t = json.dumps(h).encode(); t += b" " * ((8 - len(t) % 8) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(t)) + t + b[8 + n:])
EOF
}
metadata "$BEST" "$W/huge.safetensors" vqgan.config 're.sub(r"\"ch\": 32\b", "\"ch\": 512", old)'
check checkpoint "stored config edited to ch 512" 1 "but the file holds only" \
  "$CHECK" --model_path "$W/huge.safetensors"
metadata "$BEST" "$W/cfgjson.safetensors" vqgan.config 'old[:-5]'
check checkpoint "stored config cut short" 1 "(stored config): malformed JSON" \
  "$CHECK" --model_path "$W/cfgjson.safetensors"
metadata "$BEST" "$W/cfgkey.safetensors" vqgan.config 'old.replace("\"n_embed\"", "\"n_embedd\"")'
check checkpoint "stored config with an unknown key" 1 'unknown key "quantizer.n_embedd"' \
  "$CHECK" --model_path "$W/cfgkey.safetensors"
metadata "$LAST" "$W/negstep.last.safetensors" vqgan.training_state 'old.replace("\"step\":2", "\"step\":-2")'
check checkpoint "training state with step -2" 1 "has a negative count (step -2" \
  "$TRAIN" --resume "$W/negstep.last.safetensors"
metadata "$LAST" "$W/v1.last.safetensors" vqgan.training_state 'old.replace("\"version\":2", "\"version\":1")'
check checkpoint "checkpoint of an earlier version, --resume" 1 "was written by an earlier vqgan.cpp" \
  "$TRAIN" --resume "$W/v1.last.safetensors"
check checkpoint "best-model file given to --resume" 1 "is a best-model file" "$TRAIN" --resume "$BEST"
edit "$BEST" "$W/plain.safetensors" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); del h["__metadata__"]
t = json.dumps(h).encode(); t += b" " * ((8 - len(t) % 8) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(t)) + t + b[8 + n:])
EOF
check checkpoint "weights without our config" 1 "pass --model_config fmnist|seed256" \
  "$CHECK" --model_path "$W/plain.safetensors"
check checkpoint "weights of another architecture" 1 "but the file holds only" \
  "$CHECK" --model_path "$W/plain.safetensors" --model_config fmnist
edit "$BEST" "$W/dup.safetensors" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
h = b[8:8 + n].decode(); i = h.index('"decoder.conv_out.bias"'); j = h.index("}", i) + 1
t = (h[:j] + "," + h[i:j] + h[j:]).rstrip().encode(); t += b" " * ((8 - len(t) % 8) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(t)) + t + b[8 + n:])
EOF
check checkpoint "one tensor named twice" 1 "the key 'decoder.conv_out.bias' appears twice" \
  "$CHECK" --model_path "$W/dup.safetensors"
check checkpoint "vq_inspect on a damaged file" 1 "truncated: 5 bytes" "$BIN/vq_inspect" "$W/cut5.safetensors"

# ---- images (a training folder) ----------------------------------------------------------------
TINY=(--config "$W/tiny.json" "${RUN[@]}")
check images "image folder does not exist" 1 "image folder '$W/nowhere' does not exist" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/nowhere"
mkdir -p "$W/emptydir"
check images "empty folder" 1 "holds no images" "$TRAIN" "${TINY[@]}" --train_dir "$W/emptydir"
mkdir -p "$W/textonly" && echo notes > "$W/textonly/readme.txt"
check images "folder with no image files" 1 "holds no images (looked for .png" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/textonly"
mkdir -p "$W/one" && cp "$W/good/img0.png" "$W/one/"
check images "one image and no --val_dir" 1 "too few to hold some out for validation" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/one"
check images "a file given as the folder" 1 "is not a folder" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/good/img0.png"
mkdir -p "$W/allbad" && echo garbage > "$W/allbad/a.png" && echo garbage > "$W/allbad/b.jpg"
check images "every image unreadable" 1 "none of the 2 images" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/allbad" --val_dir "$W/good" --batch_size 1
# One damaged file among good ones: reported and skipped, the run goes on.
mixed() {  # mixed NAME: a copy of the good folder plus the file $W/$1
  rm -rf "$W/mix_$1" && cp -r "$W/good" "$W/mix_$1" && cp "$W/$1" "$W/mix_$1/"
}
head -c 60 "$W/good/img0.png" > "$W/cut.png" && mixed cut.png
check images "truncated PNG among good ones (skipped)" 0 "warning: skipping unreadable image" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/mix_cut.png" --val_dir "$W/good"
edit "$W/huge.png" <<'EOF'
import struct, sys, zlib
ihdr = b"IHDR" + struct.pack(">IIBBBBB", 65535, 65535, 8, 0, 0, 0, 0)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)))
EOF
mixed huge.png
check images "PNG header claiming 65535x65535" 0 "is 65535x65535, above the limits of 16384 pixels a side" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/mix_huge.png" --val_dir "$W/good"
printf '8BPS\0\1' > "$W/layers.png" && head -c 40 /dev/zero >> "$W/layers.png" && mixed layers.png
check images "Photoshop file named .png" 0 "cannot decode image" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/mix_layers.png" --val_dir "$W/good"
: > "$W/zero.jpg" && mixed zero.jpg
check images "zero-byte .jpg" 0 "cannot decode image" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/mix_zero.jpg" --val_dir "$W/good"
: > "$W/giant.png" && truncate -s 300M "$W/giant.png" && mixed giant.png
check images "300 MB file named .png (sparse)" 0 "above the limit of 268435456 bytes" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/mix_giant.png" --val_dir "$W/good"
printf 'P5\n2 2\n65535\n\0\1\0\2\0\3\0\4' > "$W/deep.pgm" && mixed deep.pgm
check images "16-bit PGM (stb 2.27 would byte-swap it)" 0 "a binary PNM with maxval 65535" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/mix_deep.pgm" --val_dir "$W/good"
printf 'P6\n4 4\n255\n\1\2\3' > "$W/short.ppm" && mixed short.ppm
check images "PPM cut short (stb 2.27 leaves pixels unset)" 0 "truncated PNM (3 of 48 pixel bytes)" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/mix_short.ppm" --val_dir "$W/good"
check flags "--in_channels 3 with --out_channels 1" 1 "--in_channels (3) and --out_channels (1) must match" \
  "$TRAIN" "${TINY[@]}" --train_dir "$W/good" --in_channels 3 --out_channels 1

# ---- the Fashion-MNIST files (VQ_FASHION_MNIST_DIR) ---------------------------------------------
F=/usr/share/datasets/fashion-mnist
mkdir -p "$W/fm_cut" "$W/fm_text" "$W/fm_count"
head -c 100000 "$F/train-images-idx3-ubyte.gz" > "$W/fm_cut/train-images-idx3-ubyte.gz"
echo "not idx" > "$W/fm_text/train-images-idx3-ubyte.gz"
printf '\0\0\x08\x03\0\0\xff\xff\0\0\0\x1c\0\0\0\x1c' > "$W/fm_count/train-images-idx3-ubyte.gz"
check data "Fashion-MNIST folder missing" 1 "does not exist (is the Debian package dataset-fashion-mnist installed?" \
  env VQ_FASHION_MNIST_DIR="$W/nowhere" "$TRAIN" "${TINY[@]}"
check data "train images .gz cut short" 1 "is corrupt (gzip error: the data ends early (truncated))" \
  env VQ_FASHION_MNIST_DIR="$W/fm_cut" "$TRAIN" "${TINY[@]}"
check data "train images file is text" 1 "is not an IDX image file" \
  env VQ_FASHION_MNIST_DIR="$W/fm_text" "$TRAIN" "${TINY[@]}"
check data "IDX header claims 65535 images, holds none" 1 "is truncated or damaged: 16 bytes for 65535 images of 28x28" \
  env VQ_FASHION_MNIST_DIR="$W/fm_count" "$TRAIN" "${TINY[@]}"
check data "an 8x8 model on Fashion-MNIST (no --data_dir)" 1 "give --data_dir a folder of images like the model's own" \
  "$BIN/vq_encode" --model_path "$BEST" --output "$W/enc.safetensors"
check data "unknown split" 1 "unknown Fashion-MNIST split" "$TRAIN" "${TINY[@]}" --train_dir fashion-mnist:valid
head -c 5 "$BEST" > "$W/tokens_cut.safetensors"
check data "vq_decode: a token file cut short" 1 "truncated: 5 bytes" \
  "$BIN/vq_decode" --model_path "$BEST" --tokens "$W/tokens_cut.safetensors" --output_dir "$W/dec"
check data "vq_decode: a model file as tokens" 1 "has no tensor 'indices' (not written by vq_encode)" \
  "$BIN/vq_decode" --model_path "$BEST" --tokens "$BEST" --output_dir "$W/dec"

# ---- config files (--config) ----------------------------------------------------------------------
cfg() { printf '%s' "$2" > "$W/$1.json"; }
check config "missing file" 1 "--config file '$W/none.json' does not exist" "$TRAIN" --config "$W/none.json"
check config "a folder" 1 "is not a regular file" "$TRAIN" --config "$W/emptydir"
head -c 2000000 /dev/zero | tr '\0' ' ' > "$W/huge.json"
check config "a 2 MB file" 1 "has 2000000 bytes, above the limit of 1048576 bytes" \
  "$TRAIN" --config "$W/huge.json"
cfg broken '{"quantizer": {"n_embed": 32}'
check config "malformed JSON" 1 "broken.json: malformed JSON" "$TRAIN" --config "$W/broken.json"
cfg group '{"optimizer": {"lr": 1}}'
check config "unknown group" 1 'unknown group "optimizer"' "$TRAIN" --config "$W/group.json"
cfg key '{"quantizer": {"n_embedd": 32}}'
check config "unknown key" 1 'unknown key "quantizer.n_embedd"' "$TRAIN" --config "$W/key.json"
cfg type '{"quantizer": {"n_embed": "many"}}'
check config "wrong type" 1 '"quantizer.n_embed" has the wrong type' "$TRAIN" --config "$W/type.json"
cfg twice '{"model": {"ch": 32}, "model": {"ch": 64}}'
check config "group given twice" 1 "the key 'model' appears twice" "$TRAIN" --config "$W/twice.json"
/usr/bin/python3 -c "print('[' * 100000 + ']' * 100000)" > "$W/deep.json"
check config "nested 100000 levels deep" 1 "JSON nested deeper than 64 levels" "$TRAIN" --config "$W/deep.json"
cfg big '{"model": {"ch": 131072}}'
check config "a model of 4e14 weights" 1 "(kMaxModelWeights)" "$TRAIN" --config "$W/big.json"
cfg codes '{"quantizer": {"n_embed": 100000000}}'
check config "100 million codes" 1 "(kMaxCodes)" "$TRAIN" --config "$W/codes.json"
cfg fsq '{"quantizer": {"kind": "fsq", "fsq_levels": [1000, 1000, 1000]}}'
check config "FSQ levels giving 1e9 codes" 1 "(kMaxCodes)" "$TRAIN" --config "$W/fsq.json"
cfg levels '{"model": {"ch_mult": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}}'
check config "65 levels (a 2^64 downsampling)" 1 "(kMaxModelLevels)" "$TRAIN" --config "$W/levels.json"
cfg res '{"model": {"resolution": 30}}'
check config "resolution not divisible by the downsampling" 1 "resolution 30 must be divisible by 4" \
  "$TRAIN" --config "$W/res.json"

# ---- flags --------------------------------------------------------------------------------------
check flags "unknown flag" 1 "unknown flag --epoch; did you mean --epochs?" "$TRAIN" --epoch 3
check flags "missing value" 1 "--epochs needs a value" "$TRAIN" --epochs
check flags "not an integer" 1 "--batch_size: 'eight' is not an integer" "$TRAIN" --batch_size eight
check flags "integer overflow" 1 "is not an integer" "$TRAIN" --batch_size 99999999999999999999
check flags "NaN learning rate" 1 "--lr: 'nan' is not a finite number" "$TRAIN" --lr nan
check flags "below the minimum" 1 "--batch_size: 0 is below the minimum 1" "$TRAIN" --batch_size 0
check flags "unknown preset" 1 "unknown --preset 'fast'" "$TRAIN" --preset fast
check flags "stray argument" 1 "unexpected argument" "$TRAIN" fashion-mnist
check flags "a device this machine lacks" 1 "cuda:7" "$TRAIN" "${TINY[@]}" --device cuda:7
check flags "float16 mixed precision on the CPU" 1 "--amp_dtype fp16: the CPU has no float16" \
  "$TRAIN" --use_amp --amp_dtype fp16
check flags "--use_amp on a CPU without AVX512_BF16 (simulated)" 0 \
  "note:       --use_amp: this CPU has no AVX512_BF16 instructions" \
  env ONEDNN_MAX_CPU_ISA=AVX512_CORE "$TRAIN" "${TINY[@]}" --train_dir "$W/good" --use_amp
check flags "output folder inside a file" 1 "$W/good/img0.png/out" \
  "$TRAIN" "${TINY[@]}" --model_dir "$W/good/img0.png/out"
check flags "--preset changed on --resume" 1 "--preset and --model_config cannot change when resuming" \
  "$TRAIN" --resume "$LAST" --preset best
check flags "--best_metric changed on --resume" 1 "--best_metric stlpips_vgg differs from the checkpoint's l1" \
  "$TRAIN" --resume "$LAST" --best_metric stlpips_vgg
check flags "unknown --best_metric" 1 "--best_metric must be l1, stlpips_vgg or stlpips_alex, got 'psnr'" \
  "$TRAIN" "${TINY[@]}" --best_metric psnr

echo "hostile inputs: $((count - failures)) of $count cases behaved as expected"
if [ "$MODE" = --markdown ]; then
  echo
  echo "| kind | input | what the user sees |"
  echo "|---|---|---|"
  printf '%s\n' "${rows[@]}"
fi
if [ "$MODE" = --check-doc ]; then
  # The missing-GPU message names what the machine has (its driver), so that row is not compared.
  machine_free() { grep -v '| a device this machine lacks |'; }
  documented=$(grep -E '^\| [a-z]+ \| .* \| exit [0-9]+' "$3" | machine_free)
  measured=$(printf '%s\n' "${rows[@]}" | machine_free)
  if [ "$documented" != "$measured" ]; then
    echo "FAIL: the table of hostile inputs in $3 is out of date: run scripts/gen_docs.sh"
    diff <(echo "$documented") <(echo "$measured") | head -n 20
    failures=$((failures + 1))
  fi
fi
[ "$failures" -eq 0 ]
