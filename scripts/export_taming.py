#!/usr/bin/env python3
"""Exports a vqgan.cpp model to taming-transformers: a checkpoint and its model YAML.

    python3 scripts/export_taming.py MODEL.safetensors OUT_DIR [--emavq]

writes OUT_DIR/model.ckpt (a torch.save'd dict holding "state_dict", "global_step" and "epoch",
what taming's `init_from_ckpt` reads) and OUT_DIR/model.yaml (the `model:` section of a taming
config: `taming.models.vqgan.VQModel` with the ddconfig of the model and `DummyLoss`, so loading
builds no LPIPS or discriminator). Our state-dict keys are taming's own names already. An EMA
codebook exports as a VQModel too (its codes are the lookup table; the EMA statistics matter only
to training): taming's own EMAVQ class fails to construct (a NameError in EMAVectorQuantizer,
CompVis/taming-transformers issues #146 and #218, unmerged fixes #243 and #267); --emavq writes
`taming.models.vqgan.EMAVQ` with the statistics for a copy of taming that has the fix. The
export drops what taming does not hold (the k-means flag; a .last checkpoint's optimizer and
discriminator) and refuses, with the reason, what taming cannot express: FSQ, a factorised
codebook (codebook_dim > 0), l2-normalised codes, SimVQ's reparameterised codebook (the `best`
preset uses the last two).
Needs PyTorch (torch.save); reads the .safetensors file itself. Load it in taming with e.g.

    config = OmegaConf.load("OUT_DIR/model.yaml")
    model = instantiate_from_config(config.model)
    model.init_from_ckpt("OUT_DIR/model.ckpt")
"""
import argparse
import json
import os
import struct
import sys
import tempfile

import numpy as np

NUMPY_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                "I16": np.int16, "U8": np.uint8}
TAMING_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize.embedding.")


class ExportError(Exception):
    pass


def read_safetensors(path):
    """(tensors as numpy arrays by name, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ExportError(f"{path}: not a safetensors file (under 8 bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ExportError(f"{path}: header of {n} bytes runs past the end of the file")
    try:
        header = json.loads(data[8:8 + n])
        metadata = header.pop("__metadata__", {})
        body = memoryview(data)[8 + n:]
        tensors = {}
        for name, entry in header.items():
            begin, end = entry["data_offsets"]
            if not 0 <= begin <= end <= len(body):
                raise ValueError(f"tensor {name}'s data [{begin}, {end}) lies outside the file")
            if entry["dtype"] == "BF16":  # the upper half of a float32
                raw = np.frombuffer(body[begin:end], dtype=np.uint16).astype(np.uint32) << 16
                array = raw.view(np.float32)
            elif entry["dtype"] in NUMPY_DTYPES:
                array = np.frombuffer(body[begin:end], dtype=NUMPY_DTYPES[entry["dtype"]])
            else:
                raise ValueError(f"tensor {name} has dtype {entry['dtype']}, which this export does not read")
            tensors[name] = array.reshape(entry["shape"]).copy()
    except (ValueError, KeyError, TypeError) as e:
        raise ExportError(f"{path}: not a readable safetensors file ({e})")
    return tensors, metadata


def refusal(quantizer):
    """Why taming cannot express this quantizer, or None."""
    if quantizer.get("kind", "vq") != "vq":
        return f"the quantizer is {quantizer['kind'].upper()} (finite scalar quantization); taming has only codebooks"
    if quantizer.get("codebook_dim", 0) > 0:
        return (f"the codebook is factorised (codebook_dim {quantizer['codebook_dim']}: codes live in a projected "
                "space); taming looks codes up in the latent space itself")
    if quantizer.get("l2_normalize", False):
        return "codes and latents are l2-normalised before the lookup (l2_normalize); taming compares them unnormalised"
    if quantizer.get("codebook") == "simvq":
        return "the codebook is SimVQ's (a frozen basis times a learned projection); taming stores the codes themselves"
    if quantizer.get("codebook") not in ("ema", "learned"):
        return f"unknown codebook kind {quantizer.get('codebook')!r}"
    return None


def taming_yaml(model, n_embed, emavq):
    """The model: section of a taming config, as YAML text (flow lists, no anchors)."""
    target = "taming.models.vqgan.EMAVQ" if emavq else "taming.models.vqgan.VQModel"
    ddconfig = {
        "double_z": "False",
        "z_channels": model["z_channels"],
        "resolution": model["resolution"],
        "in_channels": model["in_channels"],
        "out_ch": model["out_channels"],
        "ch": model["ch"],
        "ch_mult": "[" + ", ".join(str(m) for m in model["ch_mult"]) + "]",
        "num_res_blocks": model["num_res_blocks"],
        "attn_resolutions": "[" + ", ".join(str(r) for r in model["attn_resolutions"]) + "]",
        "dropout": float(model.get("dropout", 0.0)),
    }
    lines = [
        "# Exported from vqgan.cpp by scripts/export_taming.py: load with taming's",
        "# instantiate_from_config(config.model) and init_from_ckpt(model.ckpt).",
        "model:",
        "  base_learning_rate: 4.5e-06",
        f"  target: {target}",
        "  params:",
        f"    embed_dim: {model['embed_dim']}",
        f"    n_embed: {n_embed}",
        "    ddconfig:",
    ]
    lines += [f"      {k}: {v}" for k, v in ddconfig.items()]
    lines += ["    lossconfig:", "      target: taming.modules.losses.vqperceptual.DummyLoss", ""]
    return "\n".join(lines)


# What a .last checkpoint holds besides the model (our names), and what no export keeps.
TRAINING_GROUPS = ("loss.", "optimizer.", "pending_maintenance")


def taming_state_dict(tensors, emavq):
    """Our tensors under taming's names, without what taming does not hold."""
    tensors = {k: v for k, v in tensors.items() if not k.startswith(TRAINING_GROUPS)}
    dropped = {"quantize.initialized"}
    if not emavq:
        dropped |= {"quantize.embedding.cluster_size", "quantize.embedding.embed_avg"}
    unknown = sorted(k for k in tensors if k not in dropped and not k.startswith(TAMING_PREFIXES))
    if unknown:
        raise ExportError(f"tensors taming has no place for: {', '.join(unknown[:5])}"
                          + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    return {k: v for k, v in tensors.items() if k not in dropped}


def write_atomically(path, write):
    """write(temporary path), then rename it over `path`: an interrupted export leaves no half file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".export_")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def export(model_path, out_dir, emavq=False):
    tensors, metadata = read_safetensors(model_path)
    if "vqgan.config" not in metadata:
        raise ExportError(f"{model_path} has no vqgan.cpp config in its metadata (not written by train_vqvae_improved)")
    try:
        config = json.loads(metadata["vqgan.config"])
        model, quantizer = config["model"], config["quantizer"]
    except (ValueError, KeyError) as e:
        raise ExportError(f"{model_path}: its vqgan.config metadata is malformed ({e})")
    why = refusal(quantizer)
    if why:
        raise ExportError(f"taming-transformers cannot express this model: {why}")
    if emavq and quantizer["codebook"] != "ema":
        raise ExportError("--emavq: the model's codebook is learned, not an EMA codebook")
    state_dict = taming_state_dict(tensors, emavq)
    n_embed = state_dict["quantize.embedding.weight"].shape[0]  # after any codebook expansion
    training = json.loads(metadata.get("vqgan.training_state", "{}"))

    import torch  # only here: the checks above need no PyTorch

    os.makedirs(out_dir, exist_ok=True)
    checkpoint = {
        "state_dict": {k: torch.from_numpy(v) for k, v in state_dict.items()},
        "global_step": int(training.get("step", 0)),
        "epoch": int(training.get("epoch", 0)),
    }
    ckpt, yaml = os.path.join(out_dir, "model.ckpt"), os.path.join(out_dir, "model.yaml")
    text = taming_yaml(model, n_embed, emavq)

    def save_checkpoint(path):
        with open(path, "wb") as f:
            torch.save(checkpoint, f)

    def save_yaml(path):
        with open(path, "w") as f:
            f.write(text)

    write_atomically(ckpt, save_checkpoint)
    write_atomically(yaml, save_yaml)
    kind = "EMAVQ" if emavq else "VQModel"
    print(f"export_taming: {len(state_dict)} tensors ({kind}, {n_embed} codes of {model['embed_dim']}) -> {ckpt}, {yaml}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a vqgan.cpp model or checkpoint (.safetensors)")
    parser.add_argument("out_dir", help="where model.ckpt and model.yaml go")
    parser.add_argument("--emavq", action="store_true",
                        help="an EMA codebook as taming's EMAVQ with its statistics (needs the upstream "
                             "EMAVectorQuantizer fix); VQModel otherwise")
    args = parser.parse_args()
    try:
        export(args.model, args.out_dir, args.emavq)
    except (ExportError, OSError) as e:
        print(f"export_taming: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
