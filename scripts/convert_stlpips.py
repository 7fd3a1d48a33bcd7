#!/usr/bin/env python3
"""Converts the shift-tolerant LPIPS weights shipped inside PyPI's stlpips-pytorch wheel
(Ghildyal and Liu, ECCV 2022) into safetensors files that vqgan.cpp loads.

    convert_stlpips.py OUT_DIR        # writes OUT_DIR/stlpips_vgg.safetensors, stlpips_alex.safetensors

Run it with a Python that has torch (Debian's python3-torch is enough) and the installed package
(`pip install --no-deps stlpips-pytorch==0.0.2`). Tensor names are kept as the package stores
them (net.slice1.0.weight, ..., net.slice2.5.filt, lin0.model.1.weight, scaling_layer.shift);
the metadata records the source file, its sha256 and the terms it comes under. The package is
only read, never imported: its modules import IPython and torchsummary, which are not needed.
"""
import hashlib
import importlib.util
import os
import sys
import tempfile

import torch
from safetensors.torch import save_file

NETWORKS = {"vgg": "stlpips-vgg", "alex": "stlpips-alex"}
PACKAGE = "stlpips_pytorch"
VERSION = "0.0.2"
TERMS = ("stlpips-pytorch 0.0.2 (BSD-2-Clause, Copyright (c) 2022 Abhijay Ghildyal, Feng Liu); "
         "its anti-aliasing code is Adobe's, under CC BY-NC-SA 4.0")


def package_dir():
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"convert_stlpips: the Python package {PACKAGE} is not installed for "
                 f"{sys.executable} (pip install --no-deps stlpips-pytorch=={VERSION})")
    return spec.submodule_search_locations[0]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_atomically(tensors, target, metadata):
    """Writes a safetensors file under a temporary name, then renames it: never a half-written
    file under the final name (shared by the converters)."""
    fd, temp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(target)),
                                prefix=os.path.basename(target) + ".", suffix=".tmp")
    os.close(fd)  # a name of our own: concurrent writers of one target never share it
    try:
        save_file(tensors, temp, metadata=metadata)
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def convert(source, target, network):
    # The files use torch's legacy format and were saved from a GPU; map everything to the CPU.
    state = torch.load(source, map_location="cpu")
    tensors = {name: t.detach().float().contiguous() for name, t in state.items()}
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            sys.exit(f"convert_stlpips: {source}: tensor {name} has non-finite values")
    metadata = {
        "vqgan.perceptual_net": network,
        "vqgan.perceptual_source": f"{os.path.basename(source)} from {TERMS}",
        "vqgan.source_sha256": sha256(source),
    }
    save_atomically(tensors, target, metadata)
    count = sum(t.numel() for t in tensors.values())
    print(f"convert_stlpips: {target}: {len(tensors)} tensors, {count} values "
          f"(sha256 of the source {metadata['vqgan.source_sha256'][:16]}...)")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    weights = os.path.join(package_dir(), "weights", "vST0.0")
    for short, network in NETWORKS.items():
        source = os.path.join(weights, f"{short}_shift_tolerant.pth")
        if not os.path.isfile(source):
            sys.exit(f"convert_stlpips: {source} is missing from the installed package")
        convert(source, os.path.join(out_dir, f"stlpips_{short}.safetensors"), network)


if __name__ == "__main__":
    main()
