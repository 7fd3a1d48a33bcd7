#!/usr/bin/env python3
"""Mixed precision against float32 on training quality: the main job (`improved`) and
`--preset best`, 250 steps each (5 epochs x 50 steps of 64 images, as the main job), with and
without --use_amp, measured on the whole Fashion-MNIST test set by codebook_utilization_check.
`improved` also runs with a second seed: its trajectory (temperature-2.5 sampling, a 30%
low-usage reset each epoch) moves with any change in the low bits, so the spread between two
float32 seeds says how far apart two runs land without any change in precision.

Usage: bench/amp_quality_study.py [--build build] [--out bench/results/amp_quality_onednn3] [--only NAME,...]
About 6 (bf16) to 9 (float32) minutes per run on 2 cores. A finished run is not repeated; an
interrupted one continues with --resume.
"""
import os

from collapse_study import finished, parse_args, train_and_measure

RUNS = [  # name, preset, seed, --use_amp
    ("improved bf16 seed42", "improved", 42, True),
    ("improved bf16 seed7", "improved", 7, True),
    ("best bf16 seed42", "best", 42, True),
    ("improved fp32 seed42", "improved", 42, False),
    ("improved fp32 seed7", "improved", 7, False),
    ("best fp32 seed42", "best", 42, False),
]


def main():
    args = parse_args(__doc__, "bench/results/amp_quality_onednn3")
    lines = ["| run | utilisation | normalised entropy | perplexity | test L1 | test PSNR (dB) | SSIM | "
             "training time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, preset, seed, amp in RUNS:
        folder = os.path.join(args.out, name.replace(" ", "_"))
        if args.only and name not in args.only and not finished(os.path.join(folder, "run.summary.json")):
            continue  # not asked for and not there; finished runs stay in the table
        flags = ["--epochs", "5", "--steps_per_epoch", "50", "--seed", str(seed)]
        result = train_and_measure(args.bin_dir, folder, name, preset, {}, flags + (["--use_amp"] if amp else []))
        if result:
            train, test, _ = result
            lines.append(f"| {name} | {100 * test['utilization']:.1f}% | {test['normalized_entropy']:.3f} | "
                         f"{test['perplexity']:.1f} | {test['l1']:.4f} | {test['psnr']:.2f} | {test['ssim']:.4f} | "
                         f"{train['seconds']:.0f} s |")
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
