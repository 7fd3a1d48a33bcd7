#!/usr/bin/env python3
"""The full VQGAN objective against L1 alone: trains the fmnist model on Fashion-MNIST with the
`improved` and `best` presets for 1000 steps each (20 epochs x 50 steps of 64 images, seed 42,
--use_amp), once with the discriminator (from step 400, so active for the last 60% of the steps)
and the ST-LPIPS VGG16 perceptual term, once with L1 alone; measures each on the whole test set
with codebook_utilization_check (ST-LPIPS on every image), and writes a Markdown table and plots
of the adversarial terms over training.

Each run is measured at its final weights (the .last checkpoint), not at the trainer's best
model: that one is picked by validation L1, which the adversarial term does not lower, and for
`improved` with the full objective it was step 400, the last step before the discriminator
started.

The perceptual weight is taming's 1.0, not the presets' 0.005: at 0.005 an ST-LPIPS distance of
about 0.2 adds 0.001 to an L1 term of about 0.1, which changes nothing measurable.

Usage: bench/full_objective_study.py [--build build] [--out bench/results/full_objective] [--only NAME,...]
Runs take about an hour each on 2 cores. A run whose summary exists is not repeated; an
interrupted one (its run.last.safetensors exists) continues with --resume, so the study can be
carried across sessions by running the same command again.
"""
import glob
import os
import shutil
import subprocess
import sys

from collapse_study import parse_args, train_and_measure

FULL = {"loss": {"disc_start": 400, "perceptual_weights": "stlpips-vgg", "perceptual_weight": 1.0}}
L1_ONLY = {"loss": {"adversarial_weight": 0.0, "disc_start": 1000000, "perceptual_weight": 0.0}}
RUNS = [
    ("improved L1", "improved", L1_ONLY),
    ("improved full", "improved", FULL),
    ("best L1", "best", L1_ONLY),
    ("best full", "best", FULL),
]


def main():
    args = parse_args(__doc__, "bench/results/full_objective")
    bin_dir = args.bin_dir
    rows = []
    for name, preset, overrides in RUNS:
        if args.only and name not in args.only:
            continue
        folder = os.path.join(args.out, name.replace(" ", "_"))
        result = train_and_measure(
            bin_dir, folder, name, preset, overrides,
            ["--epochs", "20", "--steps_per_epoch", "50", "--seed", "42", "--use_amp", "--early_stopping_patience", "0"],
            ["--stlpips_images", "-1"], measure="last")
        if result:
            rows.append((name, *result))
            # The last epoch's grid (samples/ is not kept in git): validation inputs above their
            # reconstructions, to set the runs side by side.
            grids = sorted(glob.glob(os.path.join(folder, "samples", "epoch_*.png")))
            if grids:
                shutil.copyfile(grids[-1], os.path.join(folder, "final_samples.png"))

    lines = ["| run | utilisation | normalised entropy | perplexity | test PSNR (dB) | SSIM | ST-LPIPS VGG16 | "
             "ST-LPIPS AlexNet | images/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, train, test, _ in rows:
        lines.append(f"| {name} | {100 * test['utilization']:.1f}% | {test['normalized_entropy']:.3f} | "
                     f"{test['perplexity']:.1f} | {test['psnr']:.2f} | {test['ssim']:.4f} | "
                     f"{test['stlpips_vgg']:.4f} | {test['stlpips_alex']:.4f} | {train['images_per_s']:.1f} |")
    table = "\n".join(lines)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    full = [r for r in rows if r[0].endswith("full")]
    for key, title in [("g_adv", "generator adversarial loss"), ("d_loss", "discriminator hinge loss"),
                       ("adaptive_weight", "adaptive adversarial weight"), ("perceptual", "ST-LPIPS VGG16 loss term")]:
        if full:
            subprocess.run([os.path.join(bin_dir, "vq_plot_metrics"), "--metrics", ",".join(r[3] for r in full),
                            "--labels", ",".join(r[0] for r in full), "--key", key, "--title", title,
                            "--y_label", key, "--output", os.path.join(args.out, f"{key}.png")], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
