#!/usr/bin/env bash
# GPU acceptance in one command: on a machine with an NVIDIA GPU, proves the CUDA backend and
# measures it, in at most about 5 minutes, and prints one table (also OUT_DIR/summary.md; every
# phase's log is in OUT_DIR). Phases, each with its own time limit, each reported as it ends (a
# run cut short still has its table so far):
#   inventory    GPU, driver, nvcc, PyTorch, where the host's cuBLAS/cuDNN/CUDA runtime are (20 s)
#   unpack       the carry (scripts/gpu_carry.sh) or a prebuilt tree; checksums; every library
#                resolves; every program starts (60 s)
#   cuda tests   test_cuda with VQ_REQUIRE_CUDA=1: every op family and gradient on CUDA against
#                the CPU; a skip counts as a failure (150 s)
#   training     20 steps of the fmnist model on Fashion-MNIST on CUDA and the same 20 on the CPU:
#                first-step loss within 1e-3 relative, every step's loss within 5% (sampling at
#                T 2.5 may pick another code after a last-bit difference, so the runs drift
#                apart slowly), final validation utilisation within 0.1 (150 s)
#   benchmarks   sgemm and conv2d forward/backward on CUDA, training step fmnist b64 and seed256
#                b8 in images/s (150 s)
#
#   scripts/gpu_check.sh OUT_DIR                       # uses gpu_carry/vq_gpu.tar.xz
#   scripts/gpu_check.sh --prebuilt build OUT_DIR      # programs already built on this machine
#   scripts/gpu_check.sh --no-gpu OUT_DIR              # the dry run CI does: inventory, unpack
#                                                      # and start checks only
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/gpu_check.sh [--no-gpu] [--carry FILE | --prebuilt BUILD_DIR] OUT_DIR"; }
no_gpu=0
carry=gpu_carry/vq_gpu.tar.xz
prebuilt=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-gpu) no_gpu=1 ;;
    --carry) carry=${2:?--carry needs a file}; shift ;;
    --prebuilt) prebuilt=${2:?--prebuilt needs a build folder}; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "gpu_check: unknown flag $1"; usage; exit 2 ;;
    *) out=$1 ;;
  esac
  shift
done
[ -n "$out" ] || { usage; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
summary="$out/summary.md"
printf '| phase | result | seconds | numbers |\n|---|---|---:|---|\n' > "$summary"
failures=0

# report PHASE RESULT SECONDS NUMBERS: one row of the table, written at once.
report() {
  printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" >> "$summary"
  echo "== gpu_check: $1: $2 ($3 s) $4"
  case "$2" in FAIL*) failures=$((failures + 1)) ;; esac
}

# ---- inventory -------------------------------------------------------------------------------
t0=$SECONDS
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "cpu: $(nproc) cores, $(uname -m)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi: none"
  nvcc --version 2>&1 | tail -n 1 || echo "nvcc: none"
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -n 1
} > "$out/inventory.log" 2>&1
# The host's CUDA libraries: PyTorch's venv first (matched to the driver), then the toolkit's.
lib_dirs=$(timeout 20 python3 - <<'EOF' 2>/dev/null
import glob, os, site, sys
packages = site.getsitepackages() + [site.getusersitepackages()]
# pip's CUDA wheels (nvidia-cublas, nvidia-cudnn, ...) live under site-packages/nvidia.
roots = [os.path.join(p, sub) for p in packages for sub in ("nvidia", "torch/lib")]
roots = [r for r in roots if os.path.isdir(r)]
roots += ["/usr/local/cuda/lib64", "/usr/local/cuda/lib", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu"]
dirs = []
for name in ("libcublas.so.*", "libcublasLt.so.*", "libcudnn.so.*", "libcudart.so.*"):
    for root in roots:
        hits = glob.glob(os.path.join(root, "**", name), recursive=True)
        if hits:
            d = os.path.dirname(sorted(hits)[0])
            if d not in dirs:
                dirs.append(d)
            break
print(":".join(dirs))
EOF
)
echo "CUDA library folders: ${lib_dirs:-none found}" >> "$out/inventory.log"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
if [ "$no_gpu" -eq 0 ] && [ -z "$gpu" ]; then
  report inventory "FAIL: no GPU (nvidia-smi found none)" $((SECONDS - t0)) "see inventory.log"
else
  report inventory ok $((SECONDS - t0)) "${gpu:-no GPU (dry run)}; $(nproc) cores"
fi

# ---- unpack and start ------------------------------------------------------------------------
t0=$SECONDS
if [ -n "$prebuilt" ]; then
  bin="$prebuilt/bin"
  export LD_LIBRARY_PATH="${lib_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  data=""
  unpack_note="prebuilt $prebuilt"
else
  work=${TMPDIR:-/tmp}/vq_gpu_check
  rm -rf "$work" && mkdir -p "$work"
  if ! timeout 60 tar -C "$work" -xJf "$carry" > "$out/unpack.log" 2>&1; then
    report unpack "FAIL: cannot unpack $carry" $((SECONDS - t0)) "see unpack.log"
    cat "$summary"
    exit 1
  fi
  bin="$work/vq_gpu/bin"
  data="$work/vq_gpu/data"
  export LD_LIBRARY_PATH="$work/vq_gpu/lib${lib_dirs:+:$lib_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  (cd "$work/vq_gpu" && tail -n +2 MANIFEST | sha256sum -c --quiet) >> "$out/unpack.log" 2>&1 \
    || { report unpack "FAIL: checksums differ from the MANIFEST" $((SECONDS - t0)) "see unpack.log"; }
  unpack_note="$(head -n 1 "$work/vq_gpu/MANIFEST" | sed 's/^vqgan.cpp GPU carry: //')"
fi
missing=$(for p in test_cuda train_vqvae_improved bench_ops bench_train_step; do
  [ -x "$bin/$p" ] || { echo "$p (absent)"; continue; }
  ldd "$bin/$p" | awk -v p="$p" '/not found/ {print p ": " $1}'
done | sort -u)
started=0
for cmd in "test_cuda --gtest_list_tests" "train_vqvae_improved --help" \
           "bench_ops --benchmark_list_tests" "bench_train_step --benchmark_list_tests"; do
  if timeout 20 "$bin"/$cmd >> "$out/unpack.log" 2>&1; then started=$((started + 1)); fi
done
if [ -n "$missing" ]; then
  report unpack "FAIL: unresolved libraries" $((SECONDS - t0)) "$(echo "$missing" | tr '\n' ' ')"
elif [ "$started" -ne 4 ]; then
  report unpack "FAIL: $((4 - started)) of 4 programs did not start" $((SECONDS - t0)) "see unpack.log"
else
  report unpack ok $((SECONDS - t0)) "4 programs start, every library resolves; $unpack_note"
fi

if [ "$no_gpu" -eq 1 ]; then
  for phase in "cuda tests" training benchmarks; do report "$phase" "skipped (--no-gpu)" 0 ""; done
  echo
  cat "$summary"
  exit $((failures > 0))
fi

# ---- CUDA tests ------------------------------------------------------------------------------
t0=$SECONDS
VQ_REQUIRE_CUDA=1 timeout 150 "$bin/test_cuda" > "$out/cuda_tests.log" 2>&1
rc=$?
passed=$(grep -oE '^\[  PASSED  \] [0-9]+' "$out/cuda_tests.log" | grep -oE '[0-9]+$')
failed=$(grep -cE '^\[  FAILED  \] [A-Za-z]' "$out/cuda_tests.log")
skipped=$(grep -cE '^\[  SKIPPED \] [A-Za-z]' "$out/cuda_tests.log")
numbers="${passed:-0} passed, $failed failed, $skipped skipped"
if [ "$rc" -eq 0 ] && [ "$skipped" -eq 0 ]; then report "cuda tests" ok $((SECONDS - t0)) "$numbers"
elif [ "$rc" -eq 124 ]; then report "cuda tests" "FAIL: timed out" $((SECONDS - t0)) "$numbers"
else report "cuda tests" FAIL $((SECONDS - t0)) "$numbers; see cuda_tests.log"; fi

# ---- 20 training steps, CUDA against CPU -----------------------------------------------------
t0=$SECONDS
train_on() {
  VQ_FASHION_MNIST_DIR=${data:-/usr/share/datasets/fashion-mnist} timeout 70 "$bin/train_vqvae_improved" \
    --train_dir fashion-mnist:test --val_dir fashion-mnist:test --epochs 1 --steps_per_epoch 20 \
    --val_limit 512 --log_every 1 --num_samples 4 --device "$1" --model_dir "$out/train_$1" \
    --sample_dir "$out/train_$1/samples" > "$out/train_$1.log" 2>&1
}
train_on cuda && train_on cpu
rc=$?
if [ "$rc" -ne 0 ]; then
  report training "FAIL: a run stopped (exit $rc)" $((SECONDS - t0)) "see train_cuda.log, train_cpu.log"
else
  verdict=$(python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
def lines(device):
    with open(f"{out}/train_{device}/vqgan_improved.metrics.jsonl") as f:
        rows = [json.loads(l) for l in f]
    return [r for r in rows if "val_l1" not in r], [r for r in rows if "val_l1" in r][-1]
(gpu, gpu_val), (cpu, cpu_val) = lines("cuda"), lines("cpu")
rel = [abs(g["loss"] - c["loss"]) / abs(c["loss"]) for g, c in zip(gpu, cpu)]
util = abs(gpu_val["val_utilization"] - cpu_val["val_utilization"])
ok = len(gpu) == len(cpu) == 20 and rel[0] < 1e-3 and max(rel) < 0.05 and util <= 0.1
speed = gpu[-1]["images_per_s"] / max(cpu[-1]["images_per_s"], 1e-9)
print(("ok" if ok else "FAIL") + f"|first-step loss rel diff {rel[0]:.1e}, max {max(rel):.1e}; "
      f"val utilisation {gpu_val['val_utilization']:.3f} (CUDA) vs {cpu_val['val_utilization']:.3f} (CPU); "
      f"{gpu[-1]['images_per_s']:.0f} vs {cpu[-1]['images_per_s']:.0f} img/s ({speed:.1f}x)")
EOF
)
  report training "${verdict%%|*}" $((SECONDS - t0)) "${verdict#*|}"
fi

# ---- benchmarks ------------------------------------------------------------------------------
t0=$SECONDS
VQ_BENCH_DEVICE=cuda timeout 70 "$bin/bench_ops" --benchmark_filter='Sgemm|Conv2d' \
  --benchmark_min_time=0.2 --benchmark_out="$out/bench_ops.json" > "$out/bench_ops.log" 2>&1
rc_ops=$?
VQ_BENCH_DEVICE=cuda timeout 70 "$bin/bench_train_step" --benchmark_filter='perceptual:0|Seed256' \
  --benchmark_min_time=1 --benchmark_out="$out/bench_train_step.json" > "$out/bench_train_step.log" 2>&1
rc_step=$?
numbers=$(python3 - "$out" <<'EOF' 2>/dev/null
import json, sys
out, parts = sys.argv[1], []
for name in ("bench_ops", "bench_train_step"):
    try:
        runs = json.load(open(f"{out}/{name}.json"))["benchmarks"]
    except (OSError, ValueError):
        continue
    for b in runs:
        n = b["name"].replace("BM_", "").replace("/real_time", "")
        if "images/s" in b:
            parts.append(f"{n} {b['images/s']:.0f} img/s")
        elif "GFLOP/s" in b:
            parts.append(f"{n} {b['real_time']:.2f} ms ({b['GFLOP/s'] / 1e3:.1f} TFLOP/s)")
print("; ".join(parts))
EOF
)
if [ "$rc_ops" -eq 0 ] && [ "$rc_step" -eq 0 ]; then report benchmarks ok $((SECONDS - t0)) "$numbers"
else report benchmarks "FAIL: exit $rc_ops/$rc_step" $((SECONDS - t0)) "$numbers; see bench_*.log"; fi

echo
cat "$summary"
exit $((failures > 0))
