"""pytorch-fid's side of test_fid's comparison: its FID Inception network with random weights, and
its calculate_frechet_distance on fixed feature sets.

    fid_check.py DIR CONVERTER

The weights: torchvision's Inception-v3 layer list (pytorch-fid builds its network from it) drawn
under torch.manual_seed(0): convolutions normal with std sqrt(2 / fan_in), batch-norm scales and
running variances uniform in [0.5, 1.5), shifts and running means normal with std 0.1, so the
activations stay finite and of order one through all 94 layers. pytorch-fid's download is patched
out: its load_state_dict_from_url returns those weights, which are also saved as a .pth file and
converted by scripts/convert_fid_inception.py into DIR/fid_inception.safetensors.

Writes DIR/theirs.safetensors: the pool features [N, 2048] of every image in
DIR/images.safetensors (values in [0, 1]; grey images repeated to RGB), and two pairs of 64-d
feature sets drawn by numpy (seed 0) with pytorch-fid's distance between them: 1000 samples each
(full-rank covariances) and 40 each (rank 39). Exits 77 when pytorch-fid is not installed.
"""
import subprocess
import sys

import numpy as np
import torch

try:
    import pytorch_fid.inception as inception
    from pytorch_fid.fid_score import calculate_frechet_distance
except ImportError as e:
    print(e)
    sys.exit(77)
from safetensors.torch import load_file, save_file


def random_weights():
    torch.manual_seed(0)
    template = inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    state = {}
    for name, t in template.state_dict().items():
        if name.endswith("conv.weight"):
            state[name] = torch.randn_like(t) * (2.0 / t[0].numel()) ** 0.5
        elif name.endswith(("bn.weight", "bn.running_var")):
            state[name] = torch.rand_like(t) + 0.5
        elif name.endswith(("bn.bias", "bn.running_mean")):
            state[name] = torch.randn_like(t) * 0.1
        elif name.startswith("fc."):
            state[name] = torch.randn_like(t) * 0.01
        else:  # the batch-norm counters
            state[name] = t
    return state


def main():
    out_dir, converter = sys.argv[1], sys.argv[2]
    state = random_weights()
    inception.load_state_dict_from_url = lambda *args, **kwargs: state
    torch.save(state, out_dir + "/pt_inception_random.pth")
    subprocess.run([sys.executable, converter, out_dir + "/pt_inception_random.pth",
                    out_dir + "/fid_inception.safetensors"], check=True)
    # torchvision's ImageNet Inception (same names, an auxiliary classifier) is refused.
    torchvision_like = dict(state, **{"AuxLogits.fc.weight": torch.zeros(1000, 768)})
    torch.save(torchvision_like, out_dir + "/torchvision_inception.pth")
    refused = subprocess.run([sys.executable, converter, out_dir + "/torchvision_inception.pth",
                              out_dir + "/refused.safetensors"], capture_output=True, text=True)
    assert refused.returncode == 1 and "torchvision's ImageNet Inception" in refused.stderr, refused

    model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    out = {}
    with torch.no_grad():
        for name, x in load_file(out_dir + "/images.safetensors").items():
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            out["features_" + name] = model(x)[0].flatten(1).contiguous()
    rng = np.random.default_rng(0)
    for case, n in (("full_rank", 1000), ("rank_deficient", 40)):
        a = rng.standard_normal((n, 64))
        b = rng.standard_normal((n, 64)) @ rng.standard_normal((64, 64)) * 0.3 + 0.5
        fid = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                         np.cov(b, rowvar=False))
        out[case + "_a"], out[case + "_b"] = torch.from_numpy(a), torch.from_numpy(b)
        out[case + "_fid"] = torch.tensor([float(fid)], dtype=torch.float64)
    save_file(out, out_dir + "/theirs.safetensors")


if __name__ == "__main__":
    main()
