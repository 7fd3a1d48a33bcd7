#!/usr/bin/env python3
"""Side-by-side timing of vqgan.cpp and PyTorch on the same shapes and thread count.

Runs our Google Benchmark programs (JSON output) and the same ops in PyTorch, alternating the two
for several rounds so that load on a shared machine hits both alike, and prints a Markdown table
of medians: op, ours, PyTorch, ratio (ours / PyTorch; below 1 means we are faster).

Usage: bench/compare_pytorch.py [--build build] [--threads 2] [--rounds 3] [--filter REGEX]
                                [--python PYTHON]
PyTorch comes from Debian's python3-torch (1.13), which only /usr/bin/python3 sees; the script
re-runs itself under /usr/bin/python3 when the first python3 on PATH has no torch. --python runs
it under another Python instead, e.g. a venv with PyTorch 2.x from PyPI
(python3 -m venv build/torch2-venv && build/torch2-venv/bin/pip install torch numpy).
The "bf16 autocast" cases time our --use_amp path against torch.autocast("cpu", bfloat16).
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time


def ensure_torch(fallback=True):
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        if fallback and sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
        return False


def torch_cases(torch, F):
    """name -> (our program, our benchmark name, function returning a callable to time)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import pytorch_vqgan

    def conv_setup(n, c, h, o):
        x = torch.randn(n, c, h, h)
        w = torch.randn(o, c, 3, 3) * 0.05
        b = torch.zeros(o)
        dy = torch.randn(n, o, h, h)
        return x, w, b, dy

    def conv_forward(n, c, h, o):
        x, w, b, _ = conv_setup(n, c, h, o)

        def run():
            with torch.no_grad():
                F.conv2d(x, w, b, padding=1)
        return run

    def conv_backward(n, c, h, o, mask):
        x, w, b, dy = conv_setup(n, c, h, o)
        return lambda: torch.ops.aten.convolution_backward(dy, x, w, [o], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

    def conv_forward_backward(n, c, h, o, amp=False):
        x, w, b, dy = conv_setup(n, c, h, o)
        x.requires_grad_()
        w.requires_grad_()
        b.requires_grad_()

        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                y = F.conv2d(x, w, b, padding=1)
            y.backward(dy.to(y.dtype))
            x.grad = w.grad = b.grad = None
        return run

    def sgemm(n):
        a, b = torch.randn(n, n), torch.randn(n, n)
        return lambda: a @ b

    def group_norm():
        x = torch.randn(64, 128, 16, 16)
        w, b = torch.ones(128), torch.zeros(128)

        def run():
            with torch.no_grad():
                F.group_norm(x, 4, w, b)  # the op table's benchmark row: 4 groups
        return run

    def quantizer(k):
        q = pytorch_vqgan.EmaQuantizer(k=k, temperature=0.0, entropy_weight=0.0)
        z = torch.randn(64, 256, 8, 8)

        def run():
            with torch.no_grad():
                q(z)
        return run

    def perceptual():
        net = pytorch_vqgan.Vgg16Distance()
        a, b = torch.randn(64, 1, 28, 28), torch.randn(64, 1, 28, 28)

        def run():
            with torch.no_grad():
                net(a, b)
        return run

    def train_step(perceptual_weight, amp=False):
        return pytorch_vqgan.TrainStep(batch=64, perceptual_weight=perceptual_weight, amp=amp)

    cases = {"sgemm 2048^3": ("bench_ops", "BM_Sgemm/2048/real_time", lambda: sgemm(2048))}
    for n, c, h, o in [(64, 64, 32, 64), (64, 128, 16, 128), (64, 128, 8, 128)]:
        shape = f"[{n},{c},{h},{h}] 3x3->{o}"
        args = f"{n}/{c}/{h}/{o}"
        cases[f"conv2d fwd {shape}"] = ("bench_ops", f"BM_Conv2dForward/{args}/real_time",
                                        lambda a=(n, c, h, o): conv_forward(*a))
        cases[f"conv2d bwd-data {shape}"] = ("bench_ops", f"BM_Conv2dBackwardData/{args}/real_time",
                                             lambda a=(n, c, h, o): conv_backward(*a, [True, False, False]))
        cases[f"conv2d bwd-weights {shape}"] = ("bench_ops", f"BM_Conv2dBackwardWeights/{args}/real_time",
                                                lambda a=(n, c, h, o): conv_backward(*a, [False, True, True]))
        cases[f"conv2d fwd+bwd {shape}"] = ("bench_ops", f"BM_Conv2dForwardBackward/{args}/real_time",
                                            lambda a=(n, c, h, o): conv_forward_backward(*a))
        cases[f"conv2d fwd+bwd {shape} bf16 autocast"] = (
            "bench_ops", f"BM_Conv2dForwardBackwardBf16/{args}/real_time",
            lambda a=(n, c, h, o): conv_forward_backward(*a, amp=True))
    cases["group_norm [64,128,16,16] G=4"] = ("bench_ops", "BM_Op/group_norm/8_channels,_4_groups/real_time", group_norm)
    for k in (64, 512):
        cases[f"quantizer K={k} D=256 N=64x8x8"] = ("bench_ops", f"BM_Quantizer/{k}/real_time", lambda k=k: quantizer(k))
    cases["perceptual net fwd (LPIPS VGG16), 2x64 28x28"] = ("bench_ops", "BM_PerceptualForward/0/real_time",
                                                              perceptual)
    cases["train step fmnist b64 (no perceptual)"] = ("bench_train_step", "BM_TrainStep/perceptual:0/min_time:5.000/real_time",
                                                     lambda: train_step(0.0))
    cases["train step fmnist b64 (+ perceptual)"] = ("bench_train_step", "BM_TrainStep/perceptual:1/min_time:5.000/real_time",
                                                    lambda: train_step(0.005))
    cases["train step fmnist b64 (no perceptual) bf16 autocast"] = (
        "bench_train_step", "BM_TrainStepAmp/perceptual:0/min_time:5.000/real_time", lambda: train_step(0.0, amp=True))
    return cases


def time_torch(make, min_time=1.0):
    fn = make()
    fn()  # warm-up (oneDNN primitive creation)
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def run_ours(binary, names, threads):
    pattern = "^(" + "|".join(re.escape(n.split("/min_time")[0].replace("/real_time", "")) for n in names) + ")"
    env = dict(os.environ, VQ_BENCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run([binary, f"--benchmark_filter={pattern}", "--benchmark_format=json",
                          "--benchmark_min_time=1"], env=env, check=True, capture_output=True, text=True).stdout
    result = {}
    for b in json.loads(out)["benchmarks"]:
        scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b["time_unit"]]
        result[b["name"]] = b["real_time"] * scale
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build", help="CMake build folder (default: build)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both (default: all cores)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--filter", default="", help="only cases whose name matches this regex")
    parser.add_argument("--python", default="", help="run under this Python (another PyTorch)")
    args = parser.parse_args()
    if args.python and os.path.abspath(args.python) != os.path.abspath(sys.executable):
        os.execv(args.python, [args.python] + sys.argv)  # (a venv's python links to the system's)
    if not ensure_torch(fallback=not args.python):
        print("PyTorch is not installed: install Debian's python3-torch (apt-get install python3-torch) "
              "to compare; our own numbers are in the bench/ programs.", file=sys.stderr)
        return 2
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    cases = {k: v for k, v in torch_cases(torch, F).items() if re.search(args.filter, k)}
    ours = {k: [] for k in cases}
    theirs = {k: [] for k in cases}
    programs = sorted({v[0] for v in cases.values()})
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds} ...", file=sys.stderr)
        measured = {}
        for program in programs:
            names = [v[1] for v in cases.values() if v[0] == program]
            measured.update(run_ours(os.path.join(args.build, "bin", program), names, args.threads))
        for name, (_, bench_name, make) in cases.items():
            ours[name].append(measured[bench_name])
            theirs[name].append(time_torch(make))
    print(f"\n{datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, PyTorch {torch.__version__}, medians of {args.rounds} rounds\n")
    print("| op | vqgan.cpp (ms) | PyTorch (ms) | ratio |")
    print("|---|---:|---:|---:|")
    for name in cases:
        a, b = statistics.median(ours[name]), statistics.median(theirs[name])
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
