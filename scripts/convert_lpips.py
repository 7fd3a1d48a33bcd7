#!/usr/bin/env python3
"""Builds the standard LPIPS network (Zhang et al., CVPR 2018, v0.1, VGG16) for vqgan.cpp from two
files, neither of which is downloaded: your torchvision VGG16 weights (e.g. vgg16-397923af.pth,
the ImageNet weights torchvision's `vgg16(weights=...)` fetches) and the linear-layer weights that
PyPI's lpips wheel ships (lpips/weights/v0.1/vgg.pth).

    pip install --no-deps lpips==0.1.4           # scripts/setup.sh does this in build/venv
    convert_lpips.py VGG16.pth OUT_DIR           # writes OUT_DIR/lpips_vgg.safetensors

then `--perceptual_weights lpips-vgg` (with VQ_WEIGHTS_DIR=OUT_DIR, or OUT_DIR = build/weights).
Names are LPIPS's (net.slice1.0.weight, ..., lin0.model.1.weight); the metadata records both
sources with their sha256 and the terms they come under. The lpips package is only read, never
imported. Needs torch (Debian's python3-torch is enough) to read the .pth files.
"""
import importlib.util
import os
import sys

import torch

from convert_stlpips import save_atomically, sha256  # shared by the converters

VERSION = "0.1.4"
# torchvision's IMAGENET1K_V1 VGG16 (vgg16-397923af.pth), the backbone LPIPS was calibrated on.
# Other VGG16 files (e.g. IMAGENET1K_FEATURES, trained for other input scaling) convert too, but
# their distances are not LPIPS's: the script says so.
IMAGENET1K_V1_PREFIX = "397923af"
# VGG16's convolutions by their torchvision index, in LPIPS's five slices (relu1_2 ... relu5_3).
SLICES = [(1, [0, 2]), (2, [5, 7]), (3, [10, 12, 14]), (4, [17, 19, 21]), (5, [24, 26, 28])]
TERMS = ("lin layers: lpips 0.1.4 (BSD-2-Clause, Copyright (c) 2018 Richard Zhang, Phillip Isola, "
         "Alexei A. Efros, Eli Shechtman, Oliver Wang); VGG16 weights: the user's file (torchvision's "
         "ImageNet VGG16 weights come from the VGG group's release, under CC BY 4.0)")


def lin_file():
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"convert_lpips: the Python package lpips is not installed for {sys.executable} "
                 f"(pip install --no-deps lpips=={VERSION})")
    path = os.path.join(spec.submodule_search_locations[0], "weights", "v0.1", "vgg.pth")
    if not os.path.isfile(path):
        sys.exit(f"convert_lpips: {path} is missing from the lpips package")
    return path


def vgg_features(path):
    """The 13 convolutions' weights and biases of a torchvision VGG16 file, by feature index."""
    state = torch.load(path, map_location="cpu")
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    features = {}
    for _, indices in SLICES:
        for i in indices:
            for kind in ("weight", "bias"):
                key = f"features.{i}.{kind}"
                if key not in state:
                    sys.exit(f"convert_lpips: {path} is not a torchvision VGG16 state dict: no {key}")
                features[(i, kind)] = state[key].float().contiguous()
    first = features[(0, "weight")]
    if tuple(first.shape) != (64, 3, 3, 3):
        sys.exit(f"convert_lpips: {path}: features.0.weight is {tuple(first.shape)}, not VGG16's (64, 3, 3, 3)")
    return features


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    vgg_path, out_dir = sys.argv[1], sys.argv[2]
    features = vgg_features(vgg_path)
    lins = torch.load(lin_file(), map_location="cpu")
    tensors = {}
    for slice_index, indices in SLICES:
        for i in indices:
            for kind in ("weight", "bias"):
                tensors[f"net.slice{slice_index}.{i}.{kind}"] = features[(i, kind)]
    for k in range(5):
        tensors[f"lin{k}.model.1.weight"] = lins[f"lin{k}.model.1.weight"].float().contiguous()
    vgg_sha = sha256(vgg_path)
    if not vgg_sha.startswith(IMAGENET1K_V1_PREFIX):
        print(f"convert_lpips: warning: {vgg_path} (sha256 {vgg_sha[:8]}...) is not torchvision's "
              "IMAGENET1K_V1 VGG16 (vgg16-397923af.pth), the backbone LPIPS was calibrated on: the "
              "distances will not be LPIPS's published ones", file=sys.stderr)
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "lpips_vgg.safetensors")
    save_atomically(tensors, out, {
        "vqgan.perceptual_net": "vgg16",
        "vqgan.perceptual_source": f"LPIPS v0.1 VGG16: lin from lpips {VERSION}, VGG16 from "
                                   f"{os.path.basename(vgg_path)}",
        "vgg16_sha256": vgg_sha,
        "lin_sha256": sha256(lin_file()),
        "terms": TERMS,
    })
    print(f"convert_lpips: {len(tensors)} tensors -> {out}")


if __name__ == "__main__":
    main()
