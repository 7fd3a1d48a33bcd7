"""The same VQGAN training step as trainers/ runs, written in PyTorch for side-by-side timing.

An independent implementation of our two model configs (taming-style encoder/decoder with
GroupNorm 32 and SiLU, attention in the middle block and at the listed resolutions, 1x1 quant
convs): `fmnist` (32x32 grey) and `seed256` (256x256 RGB, the seed's own model, 71.9M + 2.8M
parameters), the EMA vector quantizer with Gumbel-max sampling at temperature T and the entropy
term, the 3-layer PatchGAN, and the generator + discriminator step (L1, optional perceptual
VGG16, hinge loss, adaptive adversarial weight, the finite check of the gradients, Adam). Used by
compare_pytorch.py (CPU), scripts/gpu_check.sh (on a GPU: `python bench/pytorch_vqgan.py --device
cuda --model seed256`) and a test that checks its parameter counts against ours
(`--steps 1 --batch 1`); not a reference for correctness.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def norm(c):
    return nn.GroupNorm(32, c, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if self.nin_shortcut is not None else x) + h


class Attn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        n, c, h, w = x.shape
        y = self.norm(x)
        q = self.q(y).reshape(n, c, h * w).permute(0, 2, 1)
        k = self.k(y).reshape(n, c, h * w)
        v = self.v(y).reshape(n, c, h * w)
        a = torch.softmax(torch.bmm(q, k) / math.sqrt(c), dim=2)
        return x + self.proj_out(torch.bmm(v, a.permute(0, 2, 1)).reshape(n, c, h, w))


class Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def mid(c):
    return nn.Sequential(ResBlock(c, c), Attn(c), ResBlock(c, c))


# The model configs (models/model_config.cpp): input channels, width, per-level multipliers, blocks
# per level, latent channels, resolution and the resolutions with attention after each block.
CONFIGS = {
    "fmnist": dict(cin=1, ch=64, mult=(1, 2, 2), blocks=1, z=256, res=32, attn=()),
    "seed256": dict(cin=3, ch=128, mult=(1, 1, 2, 2, 4), blocks=2, z=256, res=256, attn=(16,)),
}


class Encoder(nn.Module):
    def __init__(self, cin=1, ch=64, mult=(1, 2, 2), blocks=1, z=256, res=32, attn=()):
        super().__init__()
        layers, c = [nn.Conv2d(cin, ch, 3, 1, 1)], ch
        for i, m in enumerate(mult):
            for _ in range(blocks):
                layers.append(ResBlock(c, ch * m))
                c = ch * m
                if res in attn:
                    layers.append(Attn(c))
            if i != len(mult) - 1:
                layers.append(Down(c))
                res //= 2
        layers += [mid(c), norm(c), nn.SiLU(), nn.Conv2d(c, z, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cout=1, ch=64, mult=(1, 2, 2), blocks=1, z=256, res=32, attn=()):
        super().__init__()
        c, res = ch * mult[-1], res // 2 ** (len(mult) - 1)
        layers = [nn.Conv2d(z, c, 3, 1, 1), mid(c)]
        for i in reversed(range(len(mult))):
            for _ in range(blocks + 1):
                layers.append(ResBlock(c, ch * mult[i]))
                c = ch * mult[i]
                if res in attn:
                    layers.append(Attn(c))
            if i != 0:
                layers.append(Up(c))
                res *= 2
        layers += [norm(c), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(c, cout, 3, 1, 1)

    def forward(self, x):
        return self.conv_out(self.net(x))


class EmaQuantizer(nn.Module):
    def __init__(self, k=64, d=256, decay=0.7, temperature=2.5, beta=10.0, entropy_weight=2.0):
        super().__init__()
        self.k, self.decay, self.t, self.beta, self.ew = k, decay, temperature, beta, entropy_weight
        w = torch.empty(k, d).uniform_(-1 / k, 1 / k)
        self.register_buffer("weight", w)
        self.register_buffer("cluster_size", torch.zeros(k))
        self.register_buffer("embed_avg", w.clone())

    def forward(self, z):
        n, d, h, w = z.shape
        zf = z.permute(0, 2, 3, 1).reshape(-1, d)
        e = self.weight.clone()
        dist = (zf * zf).sum(1, keepdim=True) - 2 * zf @ e.t() + (e * e).sum(1)[None]
        if self.t > 0:
            g = -torch.log(-torch.log(torch.rand_like(dist).clamp_min(1e-20)))
            idx = torch.argmin(dist.detach() / self.t - g, 1)
        else:
            idx = torch.argmin(dist.detach(), 1)
        codes = e[idx]
        loss = self.beta * F.mse_loss(zf, codes.detach())
        if self.ew > 0:
            p = torch.softmax(-dist, 1).mean(0)
            loss = loss + self.ew * (math.log(self.k) + (p * p.clamp(1e-12, 1).log()).sum())
        with torch.no_grad():
            onehot = F.one_hot(idx, self.k).type(zf.dtype)
            self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
            self.embed_avg.mul_(self.decay).add_(onehot.t() @ zf, alpha=1 - self.decay)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + 1e-5) / (total + self.k * 1e-5) * total
            self.weight.copy_(self.embed_avg / smoothed[:, None])
        zq = zf + (codes - zf).detach()
        return zq.reshape(n, h, w, d).permute(0, 3, 1, 2), loss


class PatchGAN(nn.Module):
    def __init__(self, cin=1, ndf=64, layers=3):
        super().__init__()
        seq, mult = [nn.Conv2d(cin, ndf, 4, 2, 1), nn.LeakyReLU(0.2)], 1
        for n in range(1, layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2 if n < layers else 1, 1, bias=False),
                    nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2)]
        seq.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*seq)

    def forward(self, x):
        return self.main(x)


class Vgg16Distance(nn.Module):
    """LPIPS-style distance over VGG16's five relu slices (random weights; timing only)."""

    def __init__(self):
        super().__init__()
        cfg = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
        self.slices, c = nn.ModuleList(), 3
        for i, widths in enumerate(cfg):
            layers = [nn.MaxPool2d(2, 2)] if i else []
            for w in widths:
                layers += [nn.Conv2d(c, w, 3, 1, 1), nn.ReLU()]
                c = w
            self.slices.append(nn.Sequential(*layers))
        for p in self.parameters():
            p.requires_grad_(False)

    def features(self, x):
        out, h = [], x.expand(-1, 3, -1, -1)
        for s in self.slices:
            h = s(h)
            out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a, b):
        with torch.no_grad():
            fa = self.features(a)
        fb = self.features(b)
        return sum(((x - y) ** 2).mean(1, keepdim=True).mean((2, 3), keepdim=True) for x, y in zip(fa, fb))


class TrainStep:
    """One generator + discriminator step of a model config at the given batch size."""

    def __init__(self, batch=64, perceptual_weight=0.0, amp=False, device="cpu", model="fmnist"):
        """amp: bf16 autocast for the forward passes (backward follows), as a PyTorch user would
        write it, with the quantizer kept in fp32 as ours is (autocast off around it)."""
        torch.manual_seed(0)
        self.amp, self.device = amp, torch.device(device)
        cfg = dict(CONFIGS[model])
        cin, res, z = cfg["cin"], cfg["res"], cfg["z"]
        self.enc = Encoder(**cfg)
        cfg["cout"] = cfg.pop("cin")
        self.dec = Decoder(**cfg)
        self.quant_conv, self.post_quant_conv = nn.Conv2d(z, 256, 1), nn.Conv2d(256, z, 1)
        self.quantizer, self.disc = EmaQuantizer(), PatchGAN(cin)
        self.perceptual = Vgg16Distance() if perceptual_weight > 0 else None
        for m in (self.enc, self.dec, self.quant_conv, self.post_quant_conv, self.quantizer, self.disc,
                  self.perceptual):
            if m is not None:
                m.to(self.device)
        self.pw = perceptual_weight
        g_params = [p for m in (self.enc, self.dec, self.quant_conv, self.post_quant_conv) for p in m.parameters()]
        self.opt_g = torch.optim.Adam(g_params, lr=1e-4, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=1e-4, betas=(0.5, 0.9))
        self.x = (torch.rand(batch, cin, res, res) * 2 - 1).to(self.device)
        self.g_params, self.d_params = g_params, list(self.disc.parameters())

    def parameter_counts(self):
        return sum(p.numel() for p in self.g_params), sum(p.numel() for p in self.d_params)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def __call__(self):
        x = self.x
        with self.autocast():
            h = self.quant_conv(self.enc(x))
        with torch.autocast(self.device.type, enabled=False):
            zq, qloss = self.quantizer(h.float())
        with self.autocast():
            rec = self.dec(self.post_quant_conv(zq)).float()
            nll = 0.7 * (x - rec).abs().mean()
            if self.perceptual is not None:
                nll = nll + self.pw * self.perceptual(x, rec).float().mean()
            for p in self.disc.parameters():
                p.requires_grad_(False)
            g_adv = -self.disc(rec).float().mean()
            for p in self.disc.parameters():
                p.requires_grad_(True)
        last = self.dec.conv_out.weight
        g1 = torch.autograd.grad(nll, last, retain_graph=True)[0]
        g2 = torch.autograd.grad(g_adv, last, retain_graph=True)[0]
        weight = 0.4 * torch.clamp(g1.norm() / (g2.norm() + 1e-4), 0, 1e4).detach()
        loss = nll + weight * g_adv + qloss
        self.opt_g.zero_grad()
        loss.backward()
        # The finite check ours does before stepping: one norm over all gradients, its value (with
        # the loss) read once, as our trainer reads it.
        g_norm = torch.stack([p.grad.norm() for p in self.g_params if p.grad is not None]).norm()
        if math.isfinite(torch.stack([loss.detach(), g_norm]).sum().item()):
            self.opt_g.step()
        with self.autocast():
            d_loss = 0.5 * (F.relu(1 - self.disc(x).float()).mean() + F.relu(1 + self.disc(rec.detach()).float()).mean())
        self.opt_d.zero_grad()
        d_loss.backward()
        d_norm = torch.stack([p.grad.norm() for p in self.d_params if p.grad is not None]).norm()
        if math.isfinite(torch.stack([d_loss.detach(), d_norm]).sum().item()):
            self.opt_d.step()
        return loss.detach(), d_loss.detach()


def main():
    parser = argparse.ArgumentParser(description="Times the training step of a model config (float32 "
                                     "and bf16 autocast) and prints one JSON line per case.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--model", default="fmnist", choices=sorted(CONFIGS),
                        help="model config (default: fmnist)")
    parser.add_argument("--batch", type=int, default=0, help="images per step (default: 64 for "
                        "fmnist, 8 for seed256)")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per case")
    parser.add_argument("--steps", type=int, default=0,
                        help="run exactly this many steps, without warm-up (a check that the step "
                        "runs, timing included; 0 = time --seconds after 3 warm-up steps)")
    parser.add_argument("--amp", choices=("both", "off", "on"), default="both",
                        help="which cases: float32, bf16 autocast or both (default)")
    args = parser.parse_args()
    batch = args.batch or (8 if args.model == "seed256" else 64)
    device = torch.device(args.device)
    cases = {"both": (False, True), "off": (False,), "on": (True,)}[args.amp]
    for amp in cases:
        step = TrainStep(batch=batch, amp=amp, device=device, model=args.model)
        g_params, d_params = step.parameter_counts()
        head = {"torch": torch.__version__, "device": args.device, "model": args.model,
                "batch": batch, "amp": amp, "generator_parameters": g_params,
                "discriminator_parameters": d_params}
        try:
            for _ in range(0 if args.steps else 3):  # warm-up: cuDNN picks its algorithms
                step()
        except RuntimeError as e:  # e.g. torch 1.13's CPU bf16 autocast fails on GroupNorm
            print(json.dumps(head | {"error": str(e).splitlines()[0]}), flush=True)
            continue
        # Each step's losses are read back, as our trainer does, so the time is the work's.
        n, t0 = 0, time.perf_counter()
        while (n < args.steps) if args.steps else (time.perf_counter() - t0 < args.seconds):
            loss, d_loss = step()
            values = (loss.item(), d_loss.item())
            n += 1
        ms = (time.perf_counter() - t0) / n * 1e3
        print(json.dumps(head | {"steps": n, "ms_per_step": ms, "images_per_s": batch / ms * 1e3,
                                 "loss": values[0], "d_loss": values[1]}), flush=True)


if __name__ == "__main__":
    main()
