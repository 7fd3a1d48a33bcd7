#!/usr/bin/env python3
"""Compares two training runs that should be the same run: one process against N ranks of a
data-parallel job (tests/dist_training.sh). Exits 1 naming what differs beyond its tolerance.

    dist_compare.py RUN_A RUN_B     (folders with m.metrics.jsonl and m.last.safetensors)

Tolerances: the ranks sum the same float32 numbers in another order (per-rank partial sums,
then across ranks), so values agree to float rounding, not bit for bit:
  * every logged number of every step and validation: relative 1e-4, or absolute 2e-5 for
    values near zero (the entropy term is log K - H, a difference of nearly equal numbers);
  * the codebook (weight, embed_avg): relative 1e-4 of its largest entry; cluster_size (the
    EMA of code counts): 1e-6, so one code assignment that flipped (an argmin or sampling
    near-tie resolved differently) fails the comparison instead of hiding in the tolerance;
  * the model and discriminator weights as a whole: |a - b| / |a| <= 1e-4. Not entry by entry:
    a bias feeding a GroupNorm has a true gradient of zero, so what Adam does to it is rounding
    noise scaled up to a step of the learning rate, in either direction.
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file


def main():
    a_dir, b_dir = sys.argv[1], sys.argv[2]
    problems = []
    lines = [[json.loads(line) for line in open(f"{d}/m.metrics.jsonl")] for d in (a_dir, b_dir)]
    if len(lines[0]) != len(lines[1]):
        problems.append(f"{len(lines[0])} metrics lines against {len(lines[1])}")
    for x, y in zip(*lines):
        for key, value in x.items():
            if key == "images_per_s" or not isinstance(value, (int, float)) or value is None:
                continue
            other = y.get(key)
            if not isinstance(other, (int, float)) or abs(value - other) > max(2e-5, 1e-4 * abs(value)):
                problems.append(f"step {x.get('step')}: {key} {value} against {other}")
    a, b = load_file(f"{a_dir}/m.last.safetensors"), load_file(f"{b_dir}/m.last.safetensors")
    if a.keys() != b.keys():
        problems.append(f"tensor names differ: {sorted(set(a) ^ set(b))[:5]}")
    weights = [k for k in a if not k.startswith(("optimizer.", "quantize.", "loss_scaler."))
               and a[k].dtype.kind == "f" and k in b]
    num = sum(float(np.sum((a[k].astype(np.float64) - b[k]) ** 2)) for k in weights)
    den = sum(float(np.sum(a[k].astype(np.float64) ** 2)) for k in weights)
    print(f"weights: relative difference {np.sqrt(num / den):.2e} over {len(weights)} tensors")
    if np.sqrt(num / den) > 1e-4:
        problems.append(f"weights differ by {np.sqrt(num / den):.2e} (relative)")
    for key, tolerance in [("quantize.embedding.weight", 1e-4), ("quantize.embedding.embed_avg", 1e-4),
                           ("quantize.embedding.cluster_size", 1e-6)]:
        if key not in a:
            continue
        x, y = a[key].astype(np.float64), b[key].astype(np.float64)
        diff = float(np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-30))
        print(f"{key}: relative difference {diff:.2e}")
        if x.shape != y.shape or diff > tolerance:
            problems.append(f"{key} differs by {diff:.2e} (relative)")
    for p in problems[:20]:
        print("DIFFERENT:", p)
    print("same run" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
