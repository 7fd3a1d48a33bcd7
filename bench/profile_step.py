#!/usr/bin/env python3
"""Where the training step's time goes: samples bench_train_step with Linux perf and groups the
samples by what the code does (oneDNN convolution kernels, oneDNN layout reorders, our
elementwise / GroupNorm / resampling / reduction / index kernels, Adam, gemm, OpenMP waiting,
the kernel's page faults).

    bench/profile_step.py                      # float32 step, 2 threads
    bench/profile_step.py --amp --seconds 30   # bfloat16 autocast step

Needs `perf` (Debian: linux-perf) and perf_event_paranoid <= 2 for your own processes. oneDNN's
JIT kernels are named through the perf map it writes with ONEDNN_JIT_PROFILE=2. The table gives
each group's share of all CPU samples (both threads) and that share of the measured step time:
time in OpenMP is threads waiting for each other (load imbalance, serial code between parallel
loops), not work; so is oneDNN's barrier.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

# (group, regex on "dso symbol"), first match wins.
GROUPS = [
    # oneDNN's simple barrier is a 58-byte JIT function named plain "jit_t" (seen with
    # ONEDNN_JIT_DUMP=1): a lock xadd and a pause loop. Time in it is threads waiting for each
    # other inside a convolution (the backward-weights reduction, uneven work splits).
    ("waiting: oneDNN barrier inside convolutions", r"\bjit_t$"),
    ("conv: oneDNN compute kernels (AMX / brgemm / AVX-512)",
     r"amx_(fwd|bwd)|brgemm|brgconv|conv_kernel|conv_fwd|conv_bwd|_conv_"),
    ("conv: oneDNN layout reorders and transposes", r"reorder|jit_trans|copy_kernel|single_blk"),
    ("gemm (linear, attention, quantizer distances)", r"gemm|sgemm|openblas|dgemm"),
    ("GroupNorm forward and backward", r"CpuBackend::group_norm"),
    ("elementwise (SiLU, add, mul, casts, copies, fills)",
     r"CpuBackend::(unary|binary|compare|where|fill|copy|arange)\b|StridedLoop"),
    ("upsample / pooling", r"CpuBackend::(upsample|avg_pool|max_pool)"),
    ("reductions and softmax", r"CpuBackend::(reduce|arg_reduce|softmax)"),
    ("index / gather / scatter (quantizer)",
     r"CpuBackend::(index_select|index_add|gather|scatter_add|bincount)"),
    ("Adam", r"CpuBackend::adam|adam_step"),
    ("random numbers", r"CpuBackend::(uniform|normal)|philox"),
    ("waiting: OpenMP runtime (barriers, idle threads)", r"libgomp|libomp"),
    ("kernel (page faults, memory mapping)", r"\[kernel"),
    ("libc (malloc, memcpy, memset)", r"libc\.so|libc-|memcpy|memset|malloc|free\b"),
]


def run_perf(args, data):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), ONEDNN_JIT_PROFILE="2")
    bench_filter = "BM_TrainStepAmp/perceptual:0" if args.amp else "BM_TrainStep/perceptual:0"
    cmd = ["perf", "record", "-F", str(args.frequency), "-o", data, args.bench,
           f"--benchmark_filter={bench_filter}", f"--benchmark_min_time={args.seconds}",
           "--benchmark_format=console"]
    print("running:", " ".join(cmd), file=sys.stderr)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"perf record failed ({out.returncode}):\n{out.stderr[-2000:]}")
    ms = None
    for line in out.stdout.splitlines():
        m = re.match(r"BM_TrainStep\S*\s+([\d.]+) ms", line)
        if m:
            ms = float(m.group(1))
    return ms


def read_samples(data):
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym",
                          "--stdio", "--percent-limit", "0"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"perf report failed:\n{out.stderr[-2000:]}")
    rows = []
    for line in out.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S.*?)\s+\[(.)\]\s+(.*)", line)
        if m:
            dso = m.group(2) + (" [kernel]" if m.group(3) == "k" else "")
            rows.append((float(m.group(1)), f"{dso} {m.group(4)}"))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--amp", action="store_true", help="profile the bfloat16 autocast step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=20, help="benchmark time (min_time)")
    p.add_argument("--frequency", type=int, default=999, help="perf samples per second")
    p.add_argument("--bench", default="build/bin/bench_train_step")
    p.add_argument("--top", type=int, default=0, help="also list the N hottest symbols")
    args = p.parse_args()
    if shutil.which("perf") is None:
        sys.exit("profile_step.py needs Linux perf: apt-get install linux-perf")
    if not os.access(args.bench, os.X_OK):
        sys.exit(f"{args.bench} is not built (scripts/setup.sh builds it)")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        step_ms = run_perf(args, data)
        rows = read_samples(data)
    shares = {name: 0.0 for name, _ in GROUPS}
    shares["other"] = 0.0
    for pct, what in rows:
        for name, pattern in GROUPS:
            if re.search(pattern, what):
                shares[name] += pct
                break
        else:
            shares["other"] += pct
    total = sum(shares.values()) or 1.0
    title = "bfloat16 autocast" if args.amp else "float32"
    step = f"{step_ms:.0f} ms" if step_ms else "unknown"
    print(f"train step fmnist b64 ({title}), {args.threads} threads, step {step}\n")
    print("| where | share of CPU samples | ms per step |")
    print("|---|---:|---:|")
    for name, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
        if pct < 0.05:
            continue
        ms = f"{pct / total * step_ms:.0f}" if step_ms else ""
        print(f"| {name} | {pct / total * 100:.1f}% | {ms} |")
    if args.top:
        print(f"\nhottest {args.top} symbols:")
        for pct, what in sorted(rows, reverse=True)[:args.top]:
            print(f"  {pct:6.2f}%  {what[:150]}")


if __name__ == "__main__":
    main()
