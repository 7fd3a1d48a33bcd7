#!/usr/bin/env bash
# GPU acceptance in one command: on a machine with an NVIDIA GPU, proves the CUDA backend and
# measures it within a deadline of 6 minutes (VQ_GPU_CHECK_SECONDS), and prints one table (also
# OUT_DIR/summary.md; every phase's log is in OUT_DIR). Each phase has its own time limit, cut
# further by the deadline, and writes its row as it ends, so a run cut short still reports:
#   inventory    GPU, driver, nvcc, PyTorch, where the host's cuBLAS/cuDNN/CUDA runtime are
#   unpack       the carry (scripts/gpu_carry.sh) or a prebuilt tree; checksums; every library
#                resolves, and only to the carry, the host's CUDA libraries or the C runtime;
#                every program starts
#   cuda tests   test_cuda with VQ_REQUIRE_CUDA=1: every op family and gradient on CUDA against
#                the CPU, and the model-level checks; a skip counts as a failure
#   training     20 fmnist steps on CUDA and on the CPU, float32, twice: without the chaotic parts
#                (--temperature 0, N(0,1) codes, no restarts or resets, the discriminator from
#                step 1): every step's loss within 2%, step 1's d_loss within 1e-3 (later the
#                discriminator's batch-norm/hinge path is chaotic); and the default configuration (Gumbel sampling
#                at T 2.5, restarts), judged on step 1 (same weights and batch: 1e-3) and the
#                final validation utilisation (0.1). The default pair's spread (mean loss of steps
#                11-20, validation L1 and utilisation) is reported; two more float32 seeds give
#                the yardstick of the next phase
#   mixed prec.  the same runs on CUDA with --use_amp (bfloat16) and --amp_dtype fp16 (loss
#                scaling): without the chaotic parts, step 1 within 2% of float32 CUDA (rounded
#                convolutions) and every step within 10%; the default configuration on the mean
#                loss of steps 11-20, validation L1 and utilisation, each within 1.5x the largest
#                difference between float32 runs of seeds 42, 43 and 44 (at least 1%, 1%, 0.05):
#                a chaotic run can only be as close as another seed lands
#   product      on CUDA and the CPU, 5 steps each: the best preset (k-means init, restarts), FSQ,
#                and the perceptual term with random VGG16 weights; every loss finite, step 1
#                within 2% of the CPU's
#   resume       --deterministic on CUDA: a run resumed at step 10 against one run straight to
#                20 (default configuration, discriminator on): every loss of steps 11-20 and the
#                validation L1 equal
#   benchmarks   sgemm and conv2d on CUDA; the training step fmnist b64 and seed256 b8, float32
#                and --use_amp, in images/s, also with the former casts (VQ_CONV_CAST_ONCE=0
#                VQ_VECTOR_CASTS=0) for comparison; the PyTorch fmnist twin
#                and its seed256 twin (bench/pytorch_vqgan.py) on the same GPU with the ratios;
#                the GPU-busy share
#                (nvidia-smi) over 10 s of the seed256 --use_amp step
#   rounds       the --use_amp steps (fmnist b64, seed256 b8) with the default settings and with
#                each switch of docs/gpu.md turned off (the former casts, GroupNorm and SiLU
#                unfused, one Adam launch per parameter, scalar elementwise kernels, NCHW
#                convolutions, heuristic cuDNN algorithms, uncached weight casts, the norm writing
#                float32 for the next convolution), alternating, 3 rounds of 1.5 s each: medians
#                and their ratios (about 4.5 minutes: run it with --only rounds and
#                VQ_GPU_CHECK_SECONDS=330)
#   profile      where Nsight Compute (ncu) exists: one seed256 --use_amp step's kernel time by
#                kernel (the first 3000 launches after a warm-up step)
#
#   scripts/gpu_check.sh OUT_DIR                       # uses gpu_carry/vq_gpu.tar.xz
#   scripts/gpu_check.sh --prebuilt build OUT_DIR      # programs already built on this machine
#   scripts/gpu_check.sh --only training OUT_DIR       # one phase again (cuda_tests, training,
#                                                      # mixed, product, resume, benchmarks,
#                                                      # rounds, profile;
#                                                      # mixed needs training's runs in OUT_DIR)
#   scripts/gpu_check.sh --no-gpu OUT_DIR              # the dry run CI does: inventory, unpack
#                                                      # and start checks only
# OUT_DIR receives at most 8 files: summary.md (the table), inventory.log (inventory and unpack),
# cuda_tests.log, training.log (every training run's log: training, mixed, product, resume),
# benchmarks.log, rounds.log, profile.md (kernel time by kernel) and profile.log. The runs'
# directories, benchmark JSON and samples stay in VQ_GPU_CHECK_RUNS (default
# ${TMPDIR:-/tmp}/vq_gpu_check_runs), where --only mixed finds the training phase's runs.
# Relative paths are taken from the repository root. The recipe: docs/gpu.md.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/gpu_check.sh [--no-gpu] [--only PHASE] [--carry FILE | --prebuilt BUILD_DIR] OUT_DIR"; }
no_gpu=0
only=""
carry=gpu_carry/vq_gpu.tar.xz
prebuilt=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-gpu) no_gpu=1 ;;
    --only) only=${2:?--only needs a phase}; shift ;;
    --carry) carry=${2:?--carry needs a file}; shift ;;
    --prebuilt) prebuilt=${2:?--prebuilt needs a build folder}; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "gpu_check: unknown flag $1"; usage; exit 2 ;;
    *) out=$1 ;;
  esac
  shift
done
[ -n "$out" ] || { usage; exit 2; }
for phase in ${only//,/ }; do
  case "$phase" in
    cuda_tests | training | mixed | product | resume | benchmarks | rounds | profile) ;;
    *) echo "gpu_check: unknown phase '$phase' (cuda_tests, training, mixed, product, resume, benchmarks, rounds, profile)"; exit 2 ;;
  esac
done
# want PHASE: whether this run includes PHASE (--only takes a comma-separated list).
want() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Everything but the 8 output files: run directories, benchmark JSON, nvidia-smi samples.
runs=${VQ_GPU_CHECK_RUNS:-${TMPDIR:-/tmp}/vq_gpu_check_runs}
mkdir -p "$runs"
runs=$(cd "$runs" && pwd)
summary="$out/summary.md"
printf '| phase | result | seconds | numbers |\n|---|---|---:|---|\n' > "$summary"
failures=0
deadline=$((SECONDS + ${VQ_GPU_CHECK_SECONDS:-360}))

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
  if ! limited 60 tar -C "$work" -xJf "$carry" >> "$out/inventory.log" 2>&1; then
    report unpack "FAIL: cannot unpack $carry" $((SECONDS - t0)) "see inventory.log"
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
  (cd "$work/vq_gpu" && tail -n +2 MANIFEST | sha256sum -c --quiet) >> "$out/inventory.log" 2>&1 \
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
  if limited 20 "$bin"/$cmd > "$runs/start.log" 2>&1; then
    started=$((started + 1))
  else
    { echo "== $cmd failed:"; cat "$runs/start.log"; } >> "$out/inventory.log"
  fi
done
if [ -n "$stray" ]; then
  report unpack "FAIL: libraries missing or from outside the carry" $((SECONDS - t0)) "$(echo "$stray" | tr '\n' ';')"
elif [ -n "$unpack_problem" ]; then
  report unpack "FAIL: $unpack_problem" $((SECONDS - t0)) "see inventory.log"
elif [ "$started" -ne 4 ]; then
  report unpack "FAIL: $((4 - started)) of 4 programs did not start" $((SECONDS - t0)) "see inventory.log"
else
  report unpack ok $((SECONDS - t0)) "4 programs start, every library resolves; $unpack_note"
fi

# finish: the promise of the header (at most 8 output files), the table, the exit status.
finish() {
  local files
  files=$(find "$out" -type f | wc -l)
  if [ "$files" -gt 8 ]; then
    report "output files" "FAIL: $files in $out, at most 8" 0 "$(cd "$out" && find . -type f | tr '\n' ' ')"
  fi
  echo
  cat "$summary"
  exit $((failures > 0))
}

if [ "$no_gpu" -eq 1 ]; then
  for phase in "cuda tests" training "mixed prec." product resume benchmarks rounds profile; do
    report "$phase" "skipped (--no-gpu)" 0 ""
  done
  finish
fi

# ---- CUDA tests ------------------------------------------------------------------------------
if want cuda_tests; then
  t0=$SECONDS
  # ClearErrorWithoutGpu checks the message on GPU-less machines and skips where there is a GPU.
  VQ_REQUIRE_CUDA=1 limited 120 "$bin/test_cuda" --gtest_filter=-CudaAvailability.ClearErrorWithoutGpu \
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
fi

# ---- training runs ---------------------------------------------------------------------------
# train_on NAME DEVICE STEPS [FLAGS...]: STEPS fmnist steps on Fashion-MNIST into $runs/train_NAME
# (metrics in run.metrics.jsonl: one line per step, one validation line); its output is appended
# to training.log under the run's name.
train_on() {
  local name=$1 device=$2 steps=$3 rc=0
  shift 3
  rm -rf "$runs/train_$name"
  echo "==== train_$name: $device, $steps steps, $*" >> "$out/training.log"
  VQ_FASHION_MNIST_DIR=${data:-/usr/share/datasets/fashion-mnist} limited 90 "$bin/train_vqvae_improved" \
    --train_dir fashion-mnist:test --val_dir fashion-mnist:test --epochs 1 --steps_per_epoch "$steps" \
    --val_limit 512 --log_every 1 --num_samples 4 --device "$device" --model_name run \
    --model_dir "$runs/train_$name" --sample_dir "$runs/train_$name/samples" "$@" \
    >> "$out/training.log" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || { echo "train_$name (exit $rc)"; return 1; }
}
# Without the chaotic parts: nearest codes, no restarts or resets; the discriminator from step 1.
# Codes drawn N(0, 1) instead of the preset's near-equal +-1/K: with those, a last-bit difference
# in a latent flips argmins (the calm float32 pair drifted 13% apart by step 20 on the H200).
echo '{"quantizer": {"dead_code_reset": "off", "low_usage_reset_interval": 0, "init": "normal"}}' \
  > "$runs/calm.json"
calm=(--temperature 0 --disc_start 0 --config "$runs/calm.json")
# verdict NAME LOG PYTHON: runs the comparison script on $runs; its one line is "ok|numbers" or
# "FAIL|numbers"; anything else (a crash) becomes a FAIL naming LOG, where its errors go.
verdict() {
  local name=$1 log=$2 script=$3 v
  echo "==== the $name comparison" >> "$out/$log"
  v=$(limited 30 "$py" - "$runs" <<<"$script" 2>>"$out/$log")
  case "$v" in
    ok\|*|FAIL\|*) echo "$v" ;;
    *) echo "FAIL|the comparison did not finish (see $log)" ;;
  esac
}
# Shared by the comparisons: a run's step lines and its last validation line.
read_runs='
import json, math, sys
runs = sys.argv[1]
def run(name, steps=20):
    with open(f"{runs}/train_{name}/run.metrics.jsonl") as f:
        rows = [json.loads(l) for l in f]
    lines, val = [r for r in rows if "val_l1" not in r], [r for r in rows if "val_l1" in r]
    if len(lines) < steps // 2 or not val:
        raise SystemExit(f"FAIL|{name}: {len(lines)} step lines and {len(val)} validation lines")
    return lines, val[-1]
def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)
def mean_late(lines):  # mean loss of steps 11-20
    late = [r["loss"] for r in lines if r["step"] > 10]
    return sum(late) / max(len(late), 1)
'

if want training; then
  t0=$SECONDS
  stopped=""
  train_on cuda_calm cuda 20 "${calm[@]}" || stopped+=" cuda_calm"
  train_on cpu_calm cpu 20 "${calm[@]}" || stopped+=" cpu_calm"
  train_on cuda cuda 20 || stopped+=" cuda"
  train_on cpu cpu 20 || stopped+=" cpu"
  # Two more float32 seeds: how far apart chaotic runs land anyway (the mixed-precision yardstick).
  train_on cuda_seed43 cuda 20 --seed 43 || stopped+=" cuda_seed43"
  train_on cuda_seed44 cuda 20 --seed 44 || stopped+=" cuda_seed44"
  if [ -n "$stopped" ]; then
    report training "FAIL: a run stopped:$stopped" $((SECONDS - t0)) "see training.log"
  else
    v=$(verdict training training.log "$read_runs"'
(gc, _), (cc, _) = run("cuda_calm"), run("cpu_calm")
if len(gc) != 20 or len(cc) != 20:
    raise SystemExit(f"FAIL|calm runs logged {len(gc)} and {len(cc)} steps, not 20")
# The discriminator (batch norm on batch statistics, hinge kinks) follows its own chaotic path
# after step 1 (d_loss 0.92 vs 0.56 by step 20 on the H200 while the loss stayed within 0.5%):
# its d_loss is judged on step 1, where both devices see the same weights and batch.
calm = max(rel(g["loss"], c["loss"]) for g, c in zip(gc, cc))
d_first = rel(gc[0]["d_loss"], cc[0]["d_loss"])
(gd, gv), (cd, cv) = run("cuda"), run("cpu")
first, util = rel(gd[0]["loss"], cd[0]["loss"]), abs(gv["val_utilization"] - cv["val_utilization"])
spread = {"loss": rel(mean_late(gd), mean_late(cd)), "l1": rel(gv["val_l1"], cv["val_l1"]), "util": util}
# The largest difference between the float32 CUDA runs of seeds 42, 43 and 44.
seeds = [run(n) for n in ("cuda", "cuda_seed43", "cuda_seed44")]
pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
seed_spread = {"loss": max(rel(mean_late(a[0]), mean_late(b[0])) for a, b in pairs),
               "l1": max(rel(a[1]["val_l1"], b[1]["val_l1"]) for a, b in pairs),
               "util": max(abs(a[1]["val_utilization"] - b[1]["val_utilization"]) for a, b in pairs)}
json.dump(seed_spread, open(f"{runs}/float32_spread.json", "w"))
ok = math.isfinite(calm) and calm < 0.02 and d_first < 1e-3 and first < 1e-3 and util <= 0.1
speed = gd[-1]["images_per_s"] / max(cd[-1]["images_per_s"], 1e-9)
gu, cu, sl, s1 = gv["val_utilization"], cv["val_utilization"], spread["loss"], spread["l1"]
g_rate, c_rate = gd[-1]["images_per_s"], cd[-1]["images_per_s"]
print(("ok" if ok else "FAIL") + f"|calm (T 0, no resets, discriminator on): max step loss rel diff "
      f"{calm:.1e} (2e-2), step-1 d_loss {d_first:.1e} (1e-3); default: step-1 loss rel diff {first:.1e} (1e-3), val utilisation "
      f"{gu:.3f} vs {cu:.3f} (0.1); float32 CPU-CUDA spread: mean loss 11-20 {sl:.1e}, val L1 {s1:.1e}, "
      f"util {util:.3f}; float32 seed-to-seed spread: mean loss 11-20 %.1e, val L1 %.1e, util %.3f; "
      "%.0f vs %.0f img/s (%.1fx)" % (seed_spread["loss"], seed_spread["l1"], seed_spread["util"],
                                     g_rate, c_rate, speed))
')
    report training "${v%%|*}" $((SECONDS - t0)) "${v#*|}"
  fi
fi

# ---- mixed precision: the same CUDA runs in bfloat16 and float16 -------------------------------
if want mixed; then
  t0=$SECONDS
  stopped=""
  for p in bf16 fp16; do
    amp=(--use_amp)
    [ "$p" = fp16 ] && amp+=(--amp_dtype fp16)
    train_on "cuda_${p}_calm" cuda 20 "${calm[@]}" "${amp[@]}" || stopped+=" cuda_${p}_calm"
    train_on "cuda_$p" cuda 20 "${amp[@]}" || stopped+=" cuda_$p"
  done
  if [ -n "$stopped" ]; then
    report "mixed prec." "FAIL: a run stopped:$stopped" $((SECONDS - t0)) "see training.log"
  elif [ ! -f "$runs/float32_spread.json" ]; then
    report "mixed prec." "FAIL: no float32 spread" $((SECONDS - t0)) "run the training phase first"
  else
    v=$(verdict "mixed precision" training.log "$read_runs"'
spread = json.load(open(f"{runs}/float32_spread.json"))
floor = {"loss": 0.01, "l1": 0.01, "util": 0.05}
bound = {k: max(1.5 * v, floor[k]) for k, v in spread.items()}
ref_calm, _ = run("cuda_calm")
ref, ref_val = run("cuda")
ok, parts = True, []
for p in ("bf16", "fp16"):
    lines, _ = run(f"cuda_{p}_calm")
    by_step = {r["step"]: r["loss"] for r in ref_calm}
    diffs = {r["step"]: rel(r["loss"], by_step[r["step"]]) for r in lines if r["step"] in by_step}
    finite = all(math.isfinite(r["loss"]) for r in lines)
    first = diffs.get(1, float("nan"))  # float16 may skip step 1 (overflow): then no line
    good = finite and len(diffs) >= 15 and (1 not in diffs or first < 0.02) and max(diffs.values()) < 0.1
    dl, dv = run(f"cuda_{p}")
    d = {"loss": rel(mean_late(dl), mean_late(ref)), "l1": rel(dv["val_l1"], ref_val["val_l1"]),
         "util": abs(dv["val_utilization"] - ref_val["val_utilization"])}
    good = good and all(d[k] <= bound[k] for k in d)
    ok = ok and good
    scale = "loss scale %g, " % lines[-1]["loss_scale"] if "loss_scale" in lines[-1] else ""
    worst = max(diffs.values(), default=float("nan"))
    parts.append(f"{p}: calm {len(lines)} steps, step 1 {first:.1e} (2e-2), max {worst:.1e} (0.1), {scale}"
                 "default: mean loss 11-20 %.1e (%.1e), val L1 %.1e (%.1e), util %.3f (%.3f); %.0f img/s"
                 % (d["loss"], bound["loss"], d["l1"], bound["l1"], d["util"], bound["util"], dl[-1]["images_per_s"]))
print(("ok" if ok else "FAIL") + "|" + "; ".join(parts))
')
    report "mixed prec." "${v%%|*}" $((SECONDS - t0)) "${v#*|}"
  fi
fi

# ---- more of the product: the best preset, FSQ, the perceptual term ---------------------------
if want product; then
  t0=$SECONDS
  echo '{"quantizer": {"kind": "fsq"}}' > "$runs/fsq.json"
  stopped=""
  for device in cuda cpu; do
    train_on "best_$device" "$device" 5 --preset best || stopped+=" best_$device"
    train_on "fsq_$device" "$device" 5 --config "$runs/fsq.json" || stopped+=" fsq_$device"
    train_on "perceptual_$device" "$device" 5 --perceptual_weights random --perceptual_weight 0.1 \
      --disc_start 0 || stopped+=" perceptual_$device"
  done
  if [ -n "$stopped" ]; then
    report product "FAIL: a run stopped:$stopped" $((SECONDS - t0)) "see training.log"
  else
    v=$(verdict product training.log "$read_runs"'
ok, parts = True, []
for kind in ("best", "fsq", "perceptual"):
    (g, gv), (c, cv) = run(f"{kind}_cuda", 5), run(f"{kind}_cpu", 5)
    finite = all(math.isfinite(r["loss"]) for r in g + c)
    first = rel(g[0]["loss"], c[0]["loss"])
    ok = ok and finite and first < 0.02 and len(g) == 5
    parts.append(f"{kind}: {len(g)} steps, finite {finite}, step-1 loss rel diff {first:.1e}, val util "
                 "%.3f vs %.3f" % (gv["val_utilization"], cv["val_utilization"]))
print(("ok" if ok else "FAIL") + "|" + "; ".join(parts))
')
    report product "${v%%|*}" $((SECONDS - t0)) "${v#*|}"
  fi
fi

# ---- resume: --deterministic runs continue bit for bit ----------------------------------------
if want resume; then
  t0=$SECONDS
  stopped=""
  # The default configuration (Gumbel sampling, restarts, the discriminator from step 1): 20 steps
  # straight, and 10 steps then --resume to 20 in the same run directory.
  train_on det_straight cuda 20 --deterministic --disc_start 0 || stopped+=" det_straight"
  train_on det_resumed cuda 20 --deterministic --disc_start 0 --max_steps 10 || stopped+=" det_resumed"
  echo "==== train_det_resumed: --resume to step 20" >> "$out/training.log"
  VQ_FASHION_MNIST_DIR=${data:-/usr/share/datasets/fashion-mnist} limited 90 "$bin/train_vqvae_improved" \
    --resume "$runs/train_det_resumed/run.last.safetensors" --max_steps 20 \
    >> "$out/training.log" 2>&1 || stopped+=" det_resumed(resume)"
  if [ -n "$stopped" ]; then
    report resume "FAIL: runs stopped:$stopped" $((SECONDS - t0)) "see training.log"
  else
    v=$(verdict resume training.log "$read_runs"'
straight, s_val = run("det_straight")
resumed, r_val = run("det_resumed")
late = lambda lines: {r["step"]: r["loss"] for r in lines if r["step"] > 10}
a, b = late(straight), late(resumed)
same = sorted(a) == list(range(11, 21)) and a == b and s_val["val_l1"] == r_val["val_l1"]
diff = max((abs(a[k] - b.get(k, float("nan"))) for k in a), default=float("nan"))
l1_resumed, l1_straight = r_val["val_l1"], s_val["val_l1"]
print(("ok" if same else "FAIL") + f"|steps 11-20 of a run resumed at step 10 against one run straight: "
      f"{len(b)} steps compared, largest loss difference {diff:.3g}, validation L1 "
      f"{l1_resumed:.6f} vs {l1_straight:.6f}")
')
    report resume "${v%%|*}" $((SECONDS - t0)) "${v#*|}"
  fi
fi

# ---- benchmarks ------------------------------------------------------------------------------
# bench NAME SECONDS COMMAND...: runs COMMAND into $runs/NAME.out (JSON and JSON lines are read
# from there) and appends it to benchmarks.log under NAME; returns COMMAND's exit status.
bench() {
  local name=$1 t=$2 rc=0
  shift 2
  limited "$t" "$@" > "$runs/$name.out" 2>&1 || rc=$?
  { echo "==== $name (exit $rc): $*"; cat "$runs/$name.out"; } >> "$out/benchmarks.log"
  return "$rc"
}
if want benchmarks; then
  t0=$SECONDS
  rm -f "$runs"/bench_*.json "$runs"/torch_*.out
  bench bench_ops 45 env VQ_BENCH_DEVICE=cuda "$bin/bench_ops" --benchmark_filter='Sgemm|Conv2d|Op/' \
    --benchmark_min_time=0.2 --benchmark_out="$runs/bench_ops.json"
  rc_ops=$?
  # The train-step benchmarks set their own minimum times (5 s fmnist, 2 s seed256).
  bench bench_train_step 90 env VQ_BENCH_DEVICE=cuda "$bin/bench_train_step" \
    --benchmark_filter='perceptual:0|Seed256' --benchmark_out="$runs/bench_train_step.json"
  rc_step=$?
  # The switches kept for comparing (docs/gpu.md): the former casts (every operand cast by the
  # kernels, through the scalar copy kernel).
  bench bench_train_step_former_casts 40 env VQ_CONV_CAST_ONCE=0 VQ_VECTOR_CASTS=0 VQ_BENCH_DEVICE=cuda \
    "$bin/bench_train_step" --benchmark_filter='Seed256Amp|TrainStepAmp/perceptual:0' \
    --benchmark_out="$runs/bench_train_step_former_casts.json"
  # PyTorch's twin of the fmnist step on the same GPU (float32 with its default TF32 convolutions,
  # and bf16 autocast).
  bench torch_fmnist 60 "$py" bench/pytorch_vqgan.py --device cuda --seconds 3
  # And of the seed256 b8 step (the issue's yardstick: taming-style modules, 71.9M + 2.8M).
  bench torch_seed256 90 "$py" bench/pytorch_vqgan.py --device cuda --model seed256 --seconds 4
  # The GPU-busy share over 10+ s of the seed256 --use_amp step, sampled every 200 ms.
  busy=""
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 > "$runs/gpu_busy.csv" 2>&1 &
    smi=$!
    bench gpu_busy 40 env VQ_BENCH_MIN_TIME=12 VQ_BENCH_DEVICE=cuda "$bin/bench_train_step" \
      --benchmark_filter='Seed256Amp'
    kill "$smi" 2>/dev/null
    # The first 2 s hold start-up and the warm-up step.
    busy=$(awk 'NR > 10 && $1 ~ /^[0-9]+$/ {s += $1; n++} END {if (n) printf "%.0f%% of %d samples", s / n, n}' "$runs/gpu_busy.csv")
    echo "==== nvidia-smi utilization.gpu every 200 ms: $(tr '\n' ' ' < "$runs/gpu_busy.csv")" >> "$out/benchmarks.log"
  fi
  numbers=$(limited 20 "$py" - "$runs" "$busy" <<'EOF' 2>/dev/null
import json, sys
runs, busy, parts = sys.argv[1], sys.argv[2], []
def bench(name):
    try:
        return json.load(open(f"{runs}/{name}.json"))["benchmarks"]
    except (OSError, ValueError, KeyError):
        return []
ours = {}
for b in bench("bench_ops") + bench("bench_train_step"):
    n = b["name"].replace("BM_", "").replace("/real_time", "")
    if "images/s" in b:
        ours[n.split("/min_time")[0]] = b["images/s"]
        parts.append(f"{n} {b['images/s']:.0f} img/s")
    elif "GFLOP/s" in b:
        parts.append(f"{n} {b['real_time']:.3f} ms ({b['GFLOP/s'] / 1e3:.1f} TFLOP/s)")
for b in bench("bench_train_step_former_casts"):
    if "images/s" in b:
        parts.append(f"{b['name'].replace('BM_', '').split('/min_time')[0]} with the former casts {b['images/s']:.0f} img/s")
torch = []
for model in ("fmnist", "seed256"):
    try:
        torch += [json.loads(l) for l in open(f"{runs}/torch_{model}.out") if l.startswith("{")]
    except OSError:
        pass
keys = {("fmnist", False): "TrainStep/perceptual:0", ("fmnist", True): "TrainStepAmp/perceptual:0",
        ("seed256", False): "TrainStepSeed256", ("seed256", True): "TrainStepSeed256Amp"}
for t in torch:
    if "images_per_s" not in t:
        continue
    model = t.get("model", "fmnist")
    mine = ours.get(keys[(model, t["amp"])])
    ratio = f", ours {mine / t['images_per_s']:.2f}x" if mine else ""
    parts.append(f"PyTorch {t['torch']} {model} b{t['batch']} {'bf16' if t['amp'] else 'fp32'} {t['images_per_s']:.0f} img/s{ratio}")
if busy:
    parts.append(f"GPU busy (seed256 --use_amp) {busy}")
print("; ".join(parts))
EOF
)
  if [ "$rc_ops" -eq 0 ] && [ "$rc_step" -eq 0 ]; then report benchmarks ok $((SECONDS - t0)) "$numbers"
  else report benchmarks "FAIL: exit $rc_ops/$rc_step" $((SECONDS - t0)) "${numbers}; see benchmarks.log"; fi
fi

# ---- alternating rounds: the default against the former casts and the unfused norm -----------
if want rounds; then
  t0=$SECONDS
  rm -f "$runs"/rounds_*.json
  for r in 1 2 3; do
    for variant in default former_casts unfused_norm per_tensor_adam scalar_elementwise \
                   nchw_conv heuristic_algos uncached_casts float32_norm_output; do
      switches=(VQ_BENCH_MIN_TIME=1.5 VQ_BENCH_DEVICE=cuda)
      [ "$variant" = former_casts ] && switches+=(VQ_CONV_CAST_ONCE=0 VQ_VECTOR_CASTS=0)
      [ "$variant" = unfused_norm ] && switches+=(VQ_FUSED_GROUP_NORM_SILU=0)
      [ "$variant" = per_tensor_adam ] && switches+=(VQ_MULTI_TENSOR_ADAM=0)
      [ "$variant" = scalar_elementwise ] && switches+=(VQ_VECTOR_ELEMENTWISE=0)
      [ "$variant" = nchw_conv ] && switches+=(VQ_CHANNELS_LAST=0)
      [ "$variant" = heuristic_algos ] && switches+=(VQ_CUDNN_BENCHMARK=0)
      [ "$variant" = uncached_casts ] && switches+=(VQ_CAST_CACHE=0)
      [ "$variant" = float32_norm_output ] && switches+=(VQ_NORM_WRITES_CONV_OPERAND=0)
      limited 40 env "${switches[@]}" "$bin/bench_train_step" \
        --benchmark_filter='Seed256Amp|TrainStepAmp/perceptual:0' \
        --benchmark_out="$runs/rounds_${variant}_$r.json" >> "$out/rounds.log" 2>&1
    done
  done
  v=$(verdict rounds rounds.log '
import glob, json, statistics, sys
runs = sys.argv[1]
rates = {}
variants = {"former_casts": "the former casts", "unfused_norm": "GroupNorm and SiLU unfused",
            "per_tensor_adam": "one Adam launch per parameter",
            "scalar_elementwise": "scalar 64-bit-indexed elementwise kernels",
            "nchw_conv": "NCHW convolutions", "heuristic_algos": "heuristic cuDNN algorithms",
            "uncached_casts": "weights cast on every use",
            "float32_norm_output": "GroupNorm + SiLU writing float32 for the next conv"}
for path in sorted(glob.glob(f"{runs}/rounds_*.json")):
    variant = next((v for v in variants if v in path), "default")
    for b in json.load(open(path))["benchmarks"]:
        if "images/s" in b:
            rates.setdefault((b["name"].split("/min_time")[0].replace("BM_", ""), variant), []).append(b["images/s"])
parts = []
for name in sorted({n for n, _ in rates}):
    new = rates.get((name, "default"), [])
    for variant, what in variants.items():
        old = rates.get((name, variant), [])
        if new and old:
            m_new, m_old = statistics.median(new), statistics.median(old)
            parts.append(f"{name}: {m_new:.0f} vs {m_old:.0f} img/s with {what} ({m_new / m_old:.2f}x, medians of {len(new)}/{len(old)})")
print(("ok|" if parts else "FAIL|no rounds finished; ") + "; ".join(parts))
')
  report rounds "${v%%|*}" $((SECONDS - t0)) "${v#*|}"
fi

# ---- kernel profile --------------------------------------------------------------------------
if want profile; then
  t0=$SECONDS
  ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
  if [ -z "$ncu" ]; then
    report profile "skipped: no ncu" 0 "Nsight Compute is not installed here"
  else
    # 3000 kernels of the seed256 --use_amp step from the first (warm-up) step on, after the
    # model's initialisation (its first 500 launches).
    VQ_BENCH_MIN_TIME=0.01 VQ_BENCH_DEVICE=cuda limited 120 "$ncu" --launch-skip 500 --launch-count 3000 \
      --metrics gpu__time_duration.sum --csv --print-units base "$bin/bench_train_step" \
      --benchmark_filter='Seed256Amp' > "$runs/ncu.csv" 2> "$out/profile.log"
    rc=$?
    table=$(limited 20 "$py" - "$runs" "$out" <<'EOF' 2>>"$out/profile.log"
import csv, sys
from collections import defaultdict
runs, out = sys.argv[1], sys.argv[2]
time, count = defaultdict(float), defaultdict(int)
with open(f"{runs}/ncu.csv") as f:
    rows = [l for l in f if l.startswith('"')]
for r in csv.DictReader(rows):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    name = r["Kernel Name"].replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
    name = name.split("(")[0].split("<")[0]
    name = name.replace("void ", "").strip()
    time[name] += float(r["Metric Value"].replace(",", ""))
    count[name] += 1
total = sum(time.values())
with open(f"{out}/profile.md", "w") as f:
    f.write(f"| share | kernel | launches | ms |\n|---:|---|---:|---:|\n")
    for name, t in sorted(time.items(), key=lambda kv: -kv[1]):
        f.write(f"| {100 * t / total:.1f}% | `{name}` | {count[name]} | {t / 1e6:.2f} |\n")
top = sorted(time.items(), key=lambda kv: -kv[1])[:4]
print(f"{sum(count.values())} kernels, {total / 1e6:.1f} ms; top: " + ", ".join(f"{n} {100 * t / total:.0f}%" for n, t in top))
EOF
)
    if [ -n "$table" ]; then report profile ok $((SECONDS - t0)) "$table (profile.md)"
    else report profile "FAIL: ncu exit $rc" $((SECONDS - t0)) "see profile.log"; fi
  fi
fi

finish
