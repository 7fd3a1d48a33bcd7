#!/usr/bin/env python3
"""Turns pytorch-fid's Inception-v3 weights into the safetensors file vqgan.cpp's rFID reads.
Nothing is downloaded: bring the file pytorch-fid itself fetches on first use,
pt_inception-2015-12-05-6726825d.pth (from its GitHub releases, or ~/.cache/torch/hub/checkpoints
where pytorch-fid left it).

    convert_fid_inception.py pt_inception-2015-12-05-6726825d.pth OUT.safetensors

then `codebook_utilization_check --fid_weights OUT.safetensors` (or vq_reconstruct). Names stay
pytorch-fid's (Mixed_5b.branch1x1.conv.weight, Mixed_5b.branch1x1.bn.running_var, ...); the
classifier (fc) and the batch-norm counters are left out. torchvision's own ImageNet Inception has
the same layer names but other weights and pools: its file is refused, since its distances would
not be FID's. Needs torch (Debian's python3-torch is enough) to read the .pth file.
"""
import os
import sys

import torch

from convert_stlpips import save_atomically, sha256  # shared by the converters

# The sha256 prefix in pytorch-fid's file name (torch.hub checks it the same way).
FID_PREFIX = "6726825d"
KINDS = ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")
# A few shapes only the FID network (TensorFlow's graph, 1008 classes) has in this combination.
EXPECTED = {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
            "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
            "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
            "fc.weight": (1008, 2048)}
TERMS = ("pytorch-fid (Apache-2.0, Maximilian Seitzer) ports the weights of TensorFlow's "
         "2015-12-05 Inception-v3 graph (Apache-2.0, Google)")


def fail(message):
    sys.exit(f"convert_fid_inception: {message}")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, out = sys.argv[1], sys.argv[2]
    try:
        state = torch.load(source, map_location="cpu")
    except Exception as e:  # a damaged or foreign file: say which and why
        fail(f"cannot read {source} as a PyTorch file: {e}")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        fail(f"{source} holds a {type(state).__name__}, not a state dict")
    if any(k.startswith("AuxLogits.") for k in state):
        fail(f"{source} is torchvision's ImageNet Inception-v3 (it has AuxLogits), not "
             "pytorch-fid's FID network: its distances would not be FID's")
    for name, shape in EXPECTED.items():
        if name not in state:
            fail(f"{source} is not pytorch-fid's Inception-v3 state dict: no {name}")
        if tuple(state[name].shape) != shape:
            fail(f"{source}: {name} is {tuple(state[name].shape)}, the FID network's is {shape}")
    tensors = {k: v.float().contiguous() for k, v in state.items() if k.endswith(KINDS)}
    digest = sha256(source)
    if not digest.startswith(FID_PREFIX):
        print(f"convert_fid_inception: warning: {source} (sha256 {digest[:8]}...) is not "
              f"pytorch-fid's pt_inception-2015-12-05-{FID_PREFIX}.pth: the distances will not "
              "be comparable with published FIDs", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_atomically(tensors, out, {"vqgan.network": "fid-inception-v3",
                                   "source": os.path.basename(source), "source_sha256": digest,
                                   "terms": TERMS})
    print(f"convert_fid_inception: {len(tensors)} tensors -> {out}")


if __name__ == "__main__":
    main()
