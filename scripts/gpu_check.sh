#!/usr/bin/env bash
# GPU acceptance in one command: on a machine with an NVIDIA GPU, proves the CUDA backend and
# measures it within a deadline of 5 minutes (VQ_GPU_CHECK_SECONDS), and prints one table (also
# OUT_DIR/summary.md; every phase's log is in OUT_DIR). Each phase has its own time limit, cut
# further by the deadline, and writes its row as it ends, so a run cut short still reports:
#   inventory    GPU, driver, nvcc, PyTorch, where the host's cuBLAS/cuDNN/CUDA runtime are
#   unpack       the carry (scripts/gpu_carry.sh) or a prebuilt tree; checksums; every library
#                resolves, and only to the carry, the host's CUDA libraries or the C runtime;
#                every program starts
#   cuda tests   test_cuda with VQ_REQUIRE_CUDA=1: every op family and gradient on CUDA against
#                the CPU, and the model-level checks; a skip counts as a failure
#   training     20 steps of the fmnist model on Fashion-MNIST on CUDA and the same 20 on the CPU:
#                first-step loss within 1e-3 relative, every step's loss within 5% (sampling at
#                T 2.5 may pick another code after a last-bit difference, so the runs drift
#                apart slowly), final validation utilisation within 0.1
#   mixed prec.  the same 20 CUDA steps with --use_amp (bfloat16) and --use_amp --amp_dtype fp16
#                (dynamic loss scaling; its overflow skips leave no step line): every logged loss
#                finite, the first within 2% of the float32 CUDA run's (rounded convolutions), the
#                rest within 10%
#   benchmarks   sgemm and conv2d forward/backward on CUDA, training step fmnist b64 and seed256
#                b8 in images/s (each timed iteration includes one read-back of 10-30 us, which
#                makes the smallest convolutions look up to ~30% slower than they are)
#
#   scripts/gpu_check.sh OUT_DIR                       # uses gpu_carry/vq_gpu.tar.xz
#   scripts/gpu_check.sh --prebuilt build OUT_DIR      # programs already built on this machine
#   scripts/gpu_check.sh --no-gpu OUT_DIR              # the dry run CI does: inventory, unpack
#                                                      # and start checks only
# Relative paths are taken from the repository root.
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
deadline=$((SECONDS + ${VQ_GPU_CHECK_SECONDS:-300}))

# report PHASE RESULT SECONDS NUMBERS: one row of the table, written at once.
report() {
  printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" >> "$summary"
  echo "== gpu_check: $1: $2 ($3 s) $4"
  case "$2" in FAIL*) failures=$((failures + 1)) ;; esac
}
# limited SECONDS COMMAND...: runs COMMAND for at most SECONDS, cut to the deadline; SIGTERM,
# then SIGKILL 10 s later (a hung CUDA call may ignore SIGTERM). Exit 124 when cut.
limited() {
  local t=$1
  shift
  local left=$((deadline - SECONDS))
  [ "$left" -lt "$t" ] && t=$left
  [ "$t" -lt 1 ] && return 124
  timeout -k 10 "$t" "$@"
}

# ---- inventory -------------------------------------------------------------------------------
t0=$SECONDS
# The Python that holds PyTorch (and pip's CUDA wheels): the image's venv first.
py=""
for candidate in ${VQ_PYTHON:-} /opt/torch/.venv/bin/python3 /opt/*/.venv/bin/python3 python3; do
  if command -v "$candidate" > /dev/null 2>&1 && limited 30 "$candidate" -c 'import torch' 2>/dev/null; then
    py=$candidate
    break
  fi
done
[ -n "$py" ] || py=$(command -v python3 || echo python3)
gpu=$(limited 20 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
[ -n "$gpu" ] || gpu=$(limited 30 "$py" -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "cpu: $(nproc) cores, $(uname -m)"
  limited 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi: none"
  nvcc --version 2>&1 | tail -n 1
  echo "python: $py"
  limited 30 "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -n 1
} > "$out/inventory.log" 2>&1
# The host's CUDA libraries, by the exact names our programs were linked against: pip's wheels
# under the venv's site-packages/nvidia first (matched to the driver), then the toolkit's.
lib_dirs=$(limited 30 "$py" - <<'EOF' 2>>"$out/inventory.log"
import glob, os, site
packages = site.getsitepackages() + [site.getusersitepackages()]
roots = [os.path.join(p, sub) for p in packages for sub in ("nvidia", "torch/lib")]
roots = [r for r in roots if os.path.isdir(r)]
roots += ["/usr/local/cuda/lib64", "/usr/local/cuda/lib", "/usr/local/cuda/targets/x86_64-linux/lib",
          "/usr/lib/x86_64-linux-gnu"]
dirs = []
for name in ("libcublas.so.13", "libcublasLt.so.13", "libcudnn.so.9", "libcudart.so.13", "libnccl.so.2"):
    for root in roots:
        hits = sorted(glob.glob(os.path.join(root, "**", name), recursive=True))
        if hits:
            if os.path.dirname(hits[0]) not in dirs:
                dirs.append(os.path.dirname(hits[0]))
            break
print(":".join(dirs))
EOF
)
echo "CUDA library folders: ${lib_dirs:-none found}" >> "$out/inventory.log"
if [ "$no_gpu" -eq 0 ] && [ -z "$gpu" ]; then
  # Not fatal: a container may lack nvidia-smi and PyTorch; the CUDA tests decide.
  report inventory "warning: no GPU name found" $((SECONDS - t0)) "see inventory.log"
else
  report inventory ok $((SECONDS - t0)) "${gpu:-no GPU (dry run)}; $(nproc) cores"
fi

# ---- unpack and start ------------------------------------------------------------------------
t0=$SECONDS
unpack_problem=""
if [ -n "$prebuilt" ]; then
  bin="$prebuilt/bin"
  data=""
  own_lib=/nonexistent
  export LD_LIBRARY_PATH="${lib_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  unpack_note="prebuilt $prebuilt"
else
  work=${TMPDIR:-/tmp}/vq_gpu_check
  rm -rf "$work" && mkdir -p "$work"
  if ! limited 60 tar -C "$work" -xJf "$carry" > "$out/unpack.log" 2>&1; then
    report unpack "FAIL: cannot unpack $carry" $((SECONDS - t0)) "see unpack.log"
    cat "$summary"
    exit 1
  fi
  bin="$work/vq_gpu/bin"
  data="$work/vq_gpu/data"
  own_lib="$work/vq_gpu/lib"
  ld_path="$own_lib"
  # GCC 12's C++ runtime only where the host's is older (it would need glibc 2.36 otherwise).
  host_cxx=$(ldconfig -p | awk '$1 == "libstdc++.so.6" && /x86-64/ {print $NF; exit}')
  if [ -z "$host_cxx" ] || ! grep -qa GLIBCXX_3.4.30 "$host_cxx"; then ld_path="$ld_path:$own_lib/compat"; fi
  export LD_LIBRARY_PATH="${ld_path}${lib_dirs:+:$lib_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  (cd "$work/vq_gpu" && tail -n +2 MANIFEST | sha256sum -c --quiet) >> "$out/unpack.log" 2>&1 \
    || unpack_problem="checksums differ from the MANIFEST"
  unpack_note="$(head -n 1 "$work/vq_gpu/MANIFEST" | sed 's/^vqgan.cpp GPU carry: //')"
fi
# Every library must resolve, and to the carry, the host's CUDA libraries or the C runtime: a
# library found elsewhere on this machine would be missing on a bare GPU host.
allowed='^(linux-vdso|ld-linux[a-z0-9_-]*|libc|libm|libdl|libpthread|librt|libz|libstdc\+\+|libgcc_s|libcudart|libcublas|libcublasLt|libcudnn[a-z_]*|libnccl)\.so'
stray=$(for p in test_cuda train_vqvae_improved bench_ops bench_train_step; do
  [ -x "$bin/$p" ] || { echo "$p (absent)"; continue; }
  ldd "$bin/$p" | awk -v p="$p" '/not found/ {print p, $1, "NOT-FOUND"; next}
    $2 == "=>" {print p, $1, $3}' | while read -r prog soname path; do
    if [ "$path" = "NOT-FOUND" ]; then echo "$prog: $soname not found"; continue; fi
    case "$path" in "$own_lib"/*) continue ;; esac
    grep -Eq "$allowed" <<<"$soname" || echo "$prog: $soname from $path"
  done
done | sort -u)
started=0
for cmd in "test_cuda --gtest_list_tests" "train_vqvae_improved --help" \
           "bench_ops --benchmark_list_tests" "bench_train_step --benchmark_list_tests"; do
  if limited 20 "$bin"/$cmd >> "$out/unpack.log" 2>&1; then started=$((started + 1)); fi
done
if [ -n "$stray" ]; then
  report unpack "FAIL: libraries missing or from outside the carry" $((SECONDS - t0)) "$(echo "$stray" | tr '\n' ';')"
elif [ -n "$unpack_problem" ]; then
  report unpack "FAIL: $unpack_problem" $((SECONDS - t0)) "see unpack.log"
elif [ "$started" -ne 4 ]; then
  report unpack "FAIL: $((4 - started)) of 4 programs did not start" $((SECONDS - t0)) "see unpack.log"
else
  report unpack ok $((SECONDS - t0)) "4 programs start, every library resolves; $unpack_note"
fi

if [ "$no_gpu" -eq 1 ]; then
  for phase in "cuda tests" training "mixed prec." benchmarks; do
    report "$phase" "skipped (--no-gpu)" 0 ""
  done
  echo
  cat "$summary"
  exit $((failures > 0))
fi

# ---- CUDA tests ------------------------------------------------------------------------------
t0=$SECONDS
# ClearErrorWithoutGpu checks the message on GPU-less machines and skips where there is a GPU.
VQ_REQUIRE_CUDA=1 limited 100 "$bin/test_cuda" --gtest_filter=-CudaAvailability.ClearErrorWithoutGpu \
  > "$out/cuda_tests.log" 2>&1
rc=$?
# Count each test once: its result line ends with its time, "(N ms)".
passed=$(grep -cE '^\[       OK \] .*\([0-9]+ ms\)$' "$out/cuda_tests.log")
failed=$(grep -cE '^\[  FAILED  \] .*\([0-9]+ ms\)$' "$out/cuda_tests.log")
skipped=$(grep -cE '^\[  SKIPPED \] .*\([0-9]+ ms\)$' "$out/cuda_tests.log")
numbers="$passed passed, $failed failed, $skipped skipped"
if [ "$rc" -eq 0 ] && [ "$skipped" -eq 0 ] && [ "$passed" -gt 0 ]; then report "cuda tests" ok $((SECONDS - t0)) "$numbers"
elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then report "cuda tests" "FAIL: cut by the time limit" $((SECONDS - t0)) "$numbers"
else report "cuda tests" FAIL $((SECONDS - t0)) "$numbers; see cuda_tests.log"; fi

# ---- 20 training steps, CUDA against CPU -----------------------------------------------------
t0=$SECONDS
train_on() {  # train_on NAME DEVICE [FLAGS...]: 20 steps into $out/train_NAME
  local name=$1 device=$2
  shift 2
  rm -rf "$out/train_$name"
  VQ_FASHION_MNIST_DIR=${data:-/usr/share/datasets/fashion-mnist} limited 60 "$bin/train_vqvae_improved" \
    --train_dir fashion-mnist:test --val_dir fashion-mnist:test --epochs 1 --steps_per_epoch 20 \
    --val_limit 512 --log_every 1 --num_samples 4 --device "$device" --model_dir "$out/train_$name" \
    --sample_dir "$out/train_$name/samples" "$@" > "$out/train_$name.log" 2>&1
}
train_on cuda cuda && train_on cpu cpu
rc=$?
if [ "$rc" -ne 0 ]; then
  report training "FAIL: a run stopped (exit $rc)" $((SECONDS - t0)) "see train_cuda.log, train_cpu.log"
else
  verdict=$(limited 30 "$py" - "$out" <<'EOF' 2>"$out/training_verdict.log"
import json, math, sys
out = sys.argv[1]
def lines(device):
    with open(f"{out}/train_{device}/vqgan_improved.metrics.jsonl") as f:
        rows = [json.loads(l) for l in f]
    steps, val = [r for r in rows if "val_l1" not in r], [r for r in rows if "val_l1" in r]
    if len(steps) != 20 or not val:
        raise SystemExit(f"FAIL|{device}: {len(steps)} step lines and {len(val)} validation lines")
    return steps, val[-1]
(gpu, gpu_val), (cpu, cpu_val) = lines("cuda"), lines("cpu")
rel = [abs(g["loss"] - c["loss"]) / max(abs(c["loss"]), 1e-12) for g, c in zip(gpu, cpu)]
util = abs(gpu_val["val_utilization"] - cpu_val["val_utilization"])
ok = all(math.isfinite(r) for r in rel) and rel[0] < 1e-3 and max(rel) < 0.05 and util <= 0.1
speed = gpu[-1]["images_per_s"] / max(cpu[-1]["images_per_s"], 1e-9)
print(("ok" if ok else "FAIL") + f"|first-step loss rel diff {rel[0]:.1e}, max {max(rel):.1e}; "
      f"val utilisation {gpu_val['val_utilization']:.3f} (CUDA) vs {cpu_val['val_utilization']:.3f} (CPU); "
      f"{gpu[-1]['images_per_s']:.0f} vs {cpu[-1]['images_per_s']:.0f} img/s ({speed:.1f}x)")
EOF
)
  case "$verdict" in
    ok\|*|FAIL\|*) ;;
    *) verdict="FAIL|the comparison did not finish (see training_verdict.log)" ;;
  esac
  report training "${verdict%%|*}" $((SECONDS - t0)) "${verdict#*|}"
fi

# ---- mixed precision: the same 20 CUDA steps in bfloat16 and float16 ----------------------------
t0=$SECONDS
train_on cuda_bf16 cuda --use_amp && train_on cuda_fp16 cuda --use_amp --amp_dtype fp16
rc=$?
if [ "$rc" -ne 0 ]; then
  report "mixed prec." "FAIL: a run stopped (exit $rc)" $((SECONDS - t0)) \
    "see train_cuda_bf16.log, train_cuda_fp16.log"
else
  verdict=$(limited 30 "$py" - "$out" <<'EOF' 2>"$out/amp_verdict.log"
import json, math, sys
out = sys.argv[1]
def steps(name):
    with open(f"{out}/train_{name}/vqgan_improved.metrics.jsonl") as f:
        return [r for r in map(json.loads, f) if "val_l1" not in r]
ref = {r["step"]: r["loss"] for r in steps("cuda")}
ok, parts = bool(ref), []
for name in ("cuda_bf16", "cuda_fp16"):
    rows = steps(name)
    rel = [abs(r["loss"] - ref[r["step"]]) / max(abs(ref[r["step"]]), 1e-12) for r in rows
           if r["step"] in ref]
    # Step 1 sees the float32 run's weights and batch: only the rounding differs. (A float16
    # overflow on step 1 leaves no line for it; then only the 10% bound applies.)
    first = [d for r, d in zip(rows, rel) if r["step"] == 1]
    good = (len(rel) >= 10 and all(math.isfinite(r["loss"]) for r in rows)
            and all(d < 0.02 for d in first) and max(rel) < 0.1)
    ok = ok and good
    scale = f", loss scale {rows[-1]['loss_scale']:g}" if rows and "loss_scale" in rows[-1] else ""
    parts.append(f"{name[5:]}: {len(rows)} steps logged, step-1 loss rel diff "
                 f"{first[0] if first else float('nan'):.1e}, max {max(rel, default=float('nan')):.1e}"
                 f"{scale}, {rows[-1]['images_per_s'] if rows else 0:.0f} img/s")
print(("ok" if ok else "FAIL") + "|" + "; ".join(parts))
EOF
)
  case "$verdict" in
    ok\|*|FAIL\|*) ;;
    *) verdict="FAIL|the comparison did not finish (see amp_verdict.log)" ;;
  esac
  report "mixed prec." "${verdict%%|*}" $((SECONDS - t0)) "${verdict#*|}"
fi

# ---- benchmarks ------------------------------------------------------------------------------
t0=$SECONDS
VQ_BENCH_DEVICE=cuda limited 45 "$bin/bench_ops" --benchmark_filter='Sgemm|Conv2d' \
  --benchmark_min_time=0.2 --benchmark_out="$out/bench_ops.json" > "$out/bench_ops.log" 2>&1
rc_ops=$?
# The train-step benchmarks set their own minimum times (5 s fmnist, 2 s seed256).
VQ_BENCH_DEVICE=cuda limited 45 "$bin/bench_train_step" --benchmark_filter='perceptual:0|Seed256' \
  --benchmark_out="$out/bench_train_step.json" > "$out/bench_train_step.log" 2>&1
rc_step=$?
numbers=$(limited 20 "$py" - "$out" <<'EOF' 2>/dev/null
import json, sys
out, parts = sys.argv[1], []
for name in ("bench_ops", "bench_train_step"):
    try:
        runs = json.load(open(f"{out}/{name}.json"))["benchmarks"]
    except (OSError, ValueError, KeyError):
        continue
    for b in runs:
        n = b["name"].replace("BM_", "").replace("/real_time", "")
        if "images/s" in b:
            parts.append(f"{n} {b['images/s']:.0f} img/s")
        elif "GFLOP/s" in b:
            parts.append(f"{n} {b['real_time']:.3f} ms ({b['GFLOP/s'] / 1e3:.1f} TFLOP/s)")
print("; ".join(parts))
EOF
)
if [ "$rc_ops" -eq 0 ] && [ "$rc_step" -eq 0 ]; then report benchmarks ok $((SECONDS - t0)) "$numbers"
else report benchmarks "FAIL: exit $rc_ops/$rc_step" $((SECONDS - t0)) "${numbers}; see bench_*.log"; fi

echo
cat "$summary"
exit $((failures > 0))
