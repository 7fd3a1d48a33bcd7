#!/usr/bin/env python3
"""The codebook-collapse study: trains the fmnist model on Fashion-MNIST with several quantizer
settings for the same number of steps and seed, measures each on the whole test set with
codebook_utilization_check, and writes a Markdown table and a plot of batch utilisation over
training.

Runs (all 250 steps = 5 epochs x 50 steps of 64 images, seed 42, perceptual term off):
  taming      plain taming-style quantizer: learned codebook, uniform +-1/K init, argmin, no
              entropy term, no resets, K 512 (the classic collapse)
  original    the seed's collapsing preset (K 256 growing to 512, T 1.2, decay 0.85, ...)
  improved    the seed's fixed preset (K 64, T 2.5, decay 0.7, entropy 2, beta 10, resets)
  +kmeans     taming + k-means initialisation
  +restarts   taming + dead-code restarts at each epoch end
  +T3         taming + sampling temperature 3.0
  best-1024   --preset best (K 1024)
  best-1024 const LR   the same with the seed presets' constant learning rate 2e-4
  best-64     --preset best with K 64
  fsq-1000    finite scalar quantization, levels [8, 5, 5, 5] (1000 codes)

Usage: bench/collapse_study.py [--build build] [--out bench/results/collapse_study] [--only NAME,...]
A run whose summary already exists is not repeated (delete its folder to redo it); a run that was
interrupted (its run.last.safetensors exists, its summary does not) continues with --resume.
"""
import argparse
import json
import os
import subprocess
import sys
import time

TAMING = {"quantizer": {"codebook": "learned", "n_embed": 512, "init": "uniform", "temperature": 0.0,
                        "entropy_weight": 0.0, "beta": 0.25, "commitment_warmup_epochs": 0,
                        "dead_code_reset": "off", "low_usage_reset_interval": 0, "expand": False,
                        "active_threshold": 1.0}}


def merged(base, extra):
    out = json.loads(json.dumps(base))
    for group, values in extra.items():
        out.setdefault(group, {}).update(values)
    return out


RUNS = [
    ("taming", "improved", TAMING),
    ("original", "original", {}),
    ("improved", "improved", {}),
    ("+kmeans", "improved", merged(TAMING, {"quantizer": {"init": "kmeans"}})),
    ("+restarts", "improved", merged(TAMING, {"quantizer": {"dead_code_reset": "epoch", "dead_code_threshold": 1.0}})),
    ("+T3", "improved", merged(TAMING, {"quantizer": {"temperature": 3.0}})),
    ("best-1024", "best", {}),
    ("best-1024 const LR", "best", {"training": {"lr": 2e-4, "lr_schedule": "constant", "warmup_steps": 0}}),
    ("best-64", "best", {"quantizer": {"n_embed": 64}}),
    ("fsq-1000", "best", {"quantizer": {"kind": "fsq", "fsq_levels": [8, 5, 5, 5]}}),
]


def finished(summary_path):
    """Whether a training run completed (an interrupted run writes its summary too)."""
    if not os.path.exists(summary_path):
        return False
    with open(summary_path) as f:
        return not json.load(f).get("interrupted", False)


def run(cmd, log):
    print("  $ " + " ".join(cmd), file=sys.stderr)
    with open(log, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True)


def parse_args(doc, default_out):
    """The flags every study takes: --build, --out, --only."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build")
    parser.add_argument("--out", default=default_out)
    parser.add_argument("--only", default="", help="comma-separated run names (default: all)")
    args = parser.parse_args()
    args.bin_dir = os.path.join(args.build, "bin")
    args.only = set(filter(None, args.only.split(",")))
    os.makedirs(args.out, exist_ok=True)
    return args


def train_and_measure(bin_dir, folder, name, preset, overrides, train_flags, analysis_flags=(), measure="best"):
    """Trains one run into `folder` (or continues it with --resume if it was interrupted), then
    measures on the test set its best model (measure="best": lowest validation L1, in
    analysis/) or its final weights (measure="last": the .last checkpoint, in analysis_last/).
    Returns (training summary, test summary, metrics log), or None while the run is unfinished."""
    os.makedirs(folder, exist_ok=True)
    summary_path = os.path.join(folder, "run.summary.json")
    last = os.path.join(folder, "run.last.safetensors")
    if not finished(summary_path) and os.path.exists(last):
        # An interrupted run (killed, or stopped with Ctrl-C) continues from its checkpoint.
        print(f"[{time.strftime('%H:%M:%S')}] resuming {name}", file=sys.stderr)
        run([os.path.join(bin_dir, "train_vqvae_improved"), "--resume", last],
            os.path.join(folder, f"train_resumed_{time.strftime('%Y%m%d_%H%M%S')}.log"))
    elif not finished(summary_path):
        print(f"[{time.strftime('%H:%M:%S')}] training {name}", file=sys.stderr)
        config = os.path.join(folder, "config.json")
        with open(config, "w") as f:
            json.dump(overrides, f, indent=2)
        run([os.path.join(bin_dir, "train_vqvae_improved"), "--preset", preset, "--config", config,
             "--model_dir", folder, "--model_name", "run", "--sample_dir", os.path.join(folder, "samples"),
             *train_flags], os.path.join(folder, "train.log"))
    if not finished(summary_path):
        return None
    model, analysis = {"best": ("run.safetensors", "analysis"), "last": ("run.last.safetensors", "analysis_last")}[measure]
    analysis = os.path.join(folder, analysis)
    if not os.path.exists(os.path.join(analysis, "summary.json")):
        print(f"[{time.strftime('%H:%M:%S')}] measuring {name} ({measure} model)", file=sys.stderr)
        run([os.path.join(bin_dir, "codebook_utilization_check"), "--model_path", os.path.join(folder, model),
             "--data_dir", "fashion-mnist:test", "--output_dir", analysis, "--plot", *analysis_flags],
            analysis + ".log")
    with open(summary_path) as f:
        train = json.load(f)
    with open(os.path.join(analysis, "summary.json")) as f:
        test = json.load(f)
    return train, test, os.path.join(folder, "run.metrics.jsonl")


def main():
    args = parse_args(__doc__, "bench/results/collapse_study")
    bin_dir = args.bin_dir
    rows = []
    for name, preset, overrides in RUNS:
        if args.only and name not in args.only:
            continue
        folder = os.path.join(args.out, name.replace("+", "plus_").replace(" ", "_"))
        result = train_and_measure(bin_dir, folder, name, preset, overrides,
                                   ["--epochs", "5", "--steps_per_epoch", "50", "--seed", "42"])
        if result:
            rows.append((name, *result))

    lines = ["| run | K | utilisation | normalised entropy | perplexity | dead codes | test L1 | test PSNR (dB) | images/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, train, test, _ in rows:
        lines.append(f"| {name} | {test['num_codes']} | {100 * test['utilization']:.1f}% | {test['normalized_entropy']:.3f} | "
                     f"{test['perplexity']:.1f} | {test['dead_codes']} | {test['l1']:.4f} | {test['psnr']:.2f} | "
                     f"{train['images_per_s']:.1f} |")
    table = "\n".join(lines)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    if rows:
        subprocess.run([os.path.join(bin_dir, "vq_plot_metrics"), "--metrics", ",".join(r[3] for r in rows),
                        "--labels", ",".join(r[0] for r in rows), "--key", "batch_utilization",
                        "--title", "Codebook utilisation of each training batch (unique codes / K)",
                        "--y_label", "batch utilisation", "--output", os.path.join(args.out, "batch_utilization.png")],
                       check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
