"""Checks scripts/export_taming.py against taming-transformers' own module structure.

    python3 tests/taming_export_check.py MODEL.safetensors RECONSTRUCTIONS.safetensors WORK_DIR

MODEL is a vqgan.cpp model (EMA codebook) and RECONSTRUCTIONS what `vq_reconstruct --save_tensors`
wrote for it (inputs, reconstructions, indices). The export is loaded, strictly (every key, every
shape), into a PyTorch reimplementation of taming's Encoder, Decoder, VQModel/EMAVQ quantizers
(taming/modules/diffusionmodules/model.py and vqvae/quantize.py: the same module names, the same
forward passes), built from the exported YAML; its codes must be ours (a flip is allowed only at a
near tie between two codes) and its reconstructions of our codes ours within 1e-4. Checked: the
default export (VQModel), the --emavq one (EMAVQ with the EMA statistics), the same model
relabelled as a learned codebook (VQModel; --emavq refused), and a .last checkpoint (its optimizer
and discriminator dropped); relabelled as FSQ, factorised, l2-normalised or SimVQ it must be
refused with the reason. Prints one line per check; exits 1 on the first failure.
"""
import json
import os
import struct
import subprocess
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
EXPORT = os.path.join(HERE, "..", "scripts", "export_taming.py")
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
from export_taming import read_safetensors  # noqa: E402


# ---- taming's modules, by its names ----

def Normalize(c):
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


def nonlinearity(x):
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = Normalize(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)
        self.reshape = in_channels != out_channels

    def forward(self, x):
        h = self.conv1(nonlinearity(self.norm1(x)))
        h = self.conv2(nonlinearity(self.norm2(h)))
        return (self.nin_shortcut(x) if self.reshape else x) + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = Normalize(c)
        self.q, self.k, self.v = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        h_ = self.norm(x)
        q, k, v = self.q(h_), self.k(h_), self.v(h_)
        b, c, h, w = q.shape
        q = q.reshape(b, c, h * w).permute(0, 2, 1)
        w_ = torch.softmax(torch.bmm(q, k.reshape(b, c, h * w)) * (int(c) ** (-0.5)), dim=2)
        h_ = torch.bmm(v.reshape(b, c, h * w), w_.permute(0, 2, 1)).reshape(b, c, h, w)
        return x + self.proj_out(h_)


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def middle(c):
    mid = nn.Module()
    mid.block_1, mid.attn_1, mid.block_2 = ResnetBlock(c, c), AttnBlock(c), ResnetBlock(c, c)
    return mid


def run_middle(mid, h):
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class Encoder(nn.Module):
    def __init__(self, *, ch, ch_mult, num_res_blocks, attn_resolutions, in_channels, resolution,
                 z_channels, double_z, **ignored):
        super().__init__()
        self.num_resolutions, self.num_res_blocks = len(ch_mult), num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        curr_res, in_ch_mult = resolution, (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        for i_level in range(self.num_resolutions):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i_level], ch * ch_mult[i_level]
            for _ in range(num_res_blocks):
                block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            down = nn.Module()
            down.block, down.attn = block, attn
            if i_level != self.num_resolutions - 1:
                down.downsample = Downsample(block_in)
                curr_res //= 2
            self.down.append(down)
        self.mid = middle(block_in)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for i_level in range(self.num_resolutions):
            for i_block in range(self.num_res_blocks):
                h = self.down[i_level].block[i_block](h)
                if len(self.down[i_level].attn) > 0:
                    h = self.down[i_level].attn[i_block](h)
            if i_level != self.num_resolutions - 1:
                h = self.down[i_level].downsample(h)
        h = run_middle(self.mid, h)
        return self.conv_out(nonlinearity(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, *, ch, out_ch, ch_mult, num_res_blocks, attn_resolutions, resolution,
                 z_channels, **ignored):
        super().__init__()
        self.num_resolutions, self.num_res_blocks = len(ch_mult), num_res_blocks
        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = middle(block_in)
        self.up = nn.ModuleList()
        for i_level in reversed(range(self.num_resolutions)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i_level]
            for _ in range(num_res_blocks + 1):
                block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            up = nn.Module()
            up.block, up.attn = block, attn
            if i_level != 0:
                up.upsample = Upsample(block_in)
                curr_res *= 2
            self.up.insert(0, up)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, 1, 1)

    def forward(self, z):
        h = run_middle(self.mid, self.conv_in(z))
        for i_level in reversed(range(self.num_resolutions)):
            for i_block in range(self.num_res_blocks + 1):
                h = self.up[i_level].block[i_block](h)
                if len(self.up[i_level].attn) > 0:
                    h = self.up[i_level].attn[i_block](h)
            if i_level != 0:
                h = self.up[i_level].upsample(h)
        return self.conv_out(nonlinearity(self.norm_out(h)))


class EmbeddingEMA(nn.Module):
    def __init__(self, num_tokens, codebook_dim):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_tokens, codebook_dim), requires_grad=False)
        self.register_buffer("cluster_size", torch.zeros(num_tokens))
        self.register_buffer("embed_avg", torch.randn(num_tokens, codebook_dim))


class Quantizer(nn.Module):
    """taming's VectorQuantizer (an nn.Embedding) or EMAVectorQuantizer (EmbeddingEMA): the lookup."""

    def __init__(self, n_embed, embed_dim, ema):
        super().__init__()
        self.embedding = EmbeddingEMA(n_embed, embed_dim) if ema else nn.Embedding(n_embed, embed_dim)

    def distances(self, z):  # z [B, C, H, W] -> [B*H*W, n_embed]
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        e = self.embedding.weight
        return z_flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * z_flat @ e.t()


class TamingVQModel(nn.Module):
    def __init__(self, params):
        super().__init__()
        dd = params["ddconfig"]
        self.encoder, self.decoder = Encoder(**dd), Decoder(**dd)
        self.quantize = Quantizer(params["n_embed"], params["embed_dim"], "EMAVQ" in params["target"])
        self.quant_conv = nn.Conv2d(dd["z_channels"], params["embed_dim"], 1)
        self.post_quant_conv = nn.Conv2d(params["embed_dim"], dd["z_channels"], 1)

    def decode_code(self, codes):  # [B, h, w] -> images
        z_q = self.quantize.embedding.weight[codes].permute(0, 3, 1, 2)
        return self.decoder(self.post_quant_conv(z_q))


# ---- the checks ----

def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def relabel(model_path, out_path, change):
    """A copy of a safetensors file whose vqgan.config quantizer section has `change` applied."""
    with open(model_path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    config = json.loads(header["__metadata__"]["vqgan.config"])
    config["quantizer"].update(change)
    header["__metadata__"]["vqgan.config"] = json.dumps(config)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(out_path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data[8 + n:])


def export(model_path, out_dir, *flags):
    r = subprocess.run([sys.executable, EXPORT, model_path, out_dir, *flags], capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip()


def check_export(model_path, recon, out_dir, expected_target, *flags):
    rc, text = export(model_path, out_dir, *flags)
    if rc != 0:
        fail(f"export of {model_path} failed: {text}")
    config = yaml.safe_load(open(os.path.join(out_dir, "model.yaml")))["model"]
    if config["target"] != expected_target:
        fail(f"target {config['target']}, expected {expected_target}")
    if config["params"]["lossconfig"]["target"] != "taming.modules.losses.vqperceptual.DummyLoss":
        fail("the loss is not DummyLoss")
    model = TamingVQModel({**config["params"], "target": config["target"]})
    state_dict = torch.load(os.path.join(out_dir, "model.ckpt"), map_location="cpu")["state_dict"]
    model.load_state_dict(state_dict, strict=True)  # every key and shape, both ways
    model.eval()
    x, ours, our_codes = recon["inputs"], recon["reconstructions"], recon["indices"]
    with torch.no_grad():
        d = model.quantize.distances(model.quant_conv(model.encoder(torch.from_numpy(x))))
        codes = d.argmin(1)
        mine = torch.from_numpy(our_codes).reshape(-1)
        # A code may differ only where two codes are within float32 rounding of each other.
        gap = (d.gather(1, mine[:, None]) - d.gather(1, codes[:, None])).squeeze(1)
        flips = (codes != mine).nonzero().reshape(-1)
        scale = d.abs().max().item()
        if len(flips) and gap[flips].max().item() > 1e-5 * scale:
            fail(f"{len(flips)} codes differ from vq_reconstruct's, not at near ties "
                 f"(distance gap {gap[flips].max().item():.3g} of scale {scale:.3g})")
        recon_taming = model.decode_code(torch.from_numpy(our_codes)).clamp(-1, 1).numpy()
    err = abs(recon_taming - ours).max()
    if not err <= 1e-4:
        fail(f"reconstructions differ from vq_reconstruct's by up to {err:.3g} (bound 1e-4)")
    print(f"ok: {expected_target.split('.')[-1]}: {len(state_dict)} tensors load strictly; "
          f"{mine.numel() - len(flips)} of {mine.numel()} codes equal ({len(flips)} near-tie flips); "
          f"reconstructions within {err:.2g}")


def main():
    model_path, recon_path, work, last_path = sys.argv[1:5]
    recon, _ = read_safetensors(recon_path)
    check_export(model_path, recon, os.path.join(work, "ema"), "taming.models.vqgan.VQModel")
    check_export(model_path, recon, os.path.join(work, "emavq"), "taming.models.vqgan.EMAVQ", "--emavq")
    check_export(last_path, recon, os.path.join(work, "last"), "taming.models.vqgan.VQModel")
    learned = os.path.join(work, "learned.safetensors")
    relabel(model_path, learned, {"codebook": "learned"})
    check_export(learned, recon, os.path.join(work, "learned"), "taming.models.vqgan.VQModel")
    rc, text = export(learned, os.path.join(work, "learned_emavq"), "--emavq")
    if rc != 1 or "the model's codebook is learned" not in text:
        fail(f"--emavq on a learned codebook was not refused: exit {rc}: {text}")
    refused = {"fsq": ({"kind": "fsq"}, "finite scalar quantization"),
               "factorised": ({"codebook_dim": 4}, "codebook is factorised"),
               "l2": ({"l2_normalize": True}, "l2-normalised"),
               "simvq": ({"codebook": "simvq"}, "SimVQ")}
    for name, (change, reason) in refused.items():
        path = os.path.join(work, f"{name}.safetensors")
        relabel(model_path, path, change)
        rc, text = export(path, os.path.join(work, name))
        if rc != 1 or "taming-transformers cannot express this model" not in text or reason not in text:
            fail(f"the {name} model was not refused with its reason: exit {rc}: {text}")
        if os.path.exists(os.path.join(work, name, "model.ckpt")):
            fail(f"the refused {name} export left a checkpoint")
    print(f"ok: FSQ, factorised, l2-normalised and SimVQ models are refused with the reason")
    damaged = os.path.join(work, "damaged.safetensors")
    with open(model_path, "rb") as f:
        head = f.read(4096)
    with open(damaged, "wb") as f:
        f.write(head)  # the header promises data the file does not hold
    rc, text = export(damaged, os.path.join(work, "damaged"))
    if rc != 1 or "export_taming: error:" not in text or "Traceback" in text:
        fail(f"a cut file was not refused with a message: exit {rc}: {text}")
    print("ok: a cut model file is refused with a message, not a traceback")


if __name__ == "__main__":
    main()
