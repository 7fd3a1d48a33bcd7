#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/: small valid files
of every kind each parser accepts, and known-bad ones (the cases the unit tests reject). Run once
by a developer; the files are committed. Inputs that fuzzing found are added next to them as
regression-<name> files by scripts/ci_fuzz.sh, never rewritten here.

Usage: tests/fuzz/make_seeds.py [--build build]   (the build's train_vqvae_improved makes the
checkpoint seeds; a C compiler and Debian's stb headers make the JPEG and GIF seeds)
"""
import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(entries, metadata=None, header_extra=""):
    """entries: (name, dtype, shape, raw bytes). The header as our writer lays it out."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")) + header_extra
    text += " " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text.encode() + data


def safetensors_seeds():
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
    write("safetensors", "valid_two_tensors", safetensors(
        [("w", "F32", [2, 2], f32), ("i", "I64", [1], struct.pack("<q", 7)), ("b", "U8", [3], b"abc")],
        {"format": "pt", "note": json.dumps({"k": [1, 2]})}))
    write("safetensors", "valid_every_dtype", safetensors(
        [("d", "F64", [1], struct.pack("<d", 1.5)), ("h", "F16", [2], b"\x00\x3c\x00\xc0"),
         ("bf", "BF16", [2], b"\x80\x3f\x00\x40"), ("e", "F32", [0, 3], b"")]))
    write("safetensors", "valid_narrow_integers", safetensors(
        [("t", "I32", [2], struct.pack("<2i", -3, 70000)), ("s", "I16", [3], struct.pack("<3h", 1, -2, 32767))]))
    write("safetensors", "bad_truncated", safetensors([("w", "F32", [2, 2], f32)])[:-3])
    write("safetensors", "bad_header_length", struct.pack("<Q", 1 << 40) + b"{}")
    write("safetensors", "bad_overlap", struct.pack("<Q", 96) + json.dumps(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}).ljust(96).encode() + b"\0" * 8)
    write("safetensors", "bad_huge_shape", safetensors([("w", "F32", [4294967296, 4294967296, 2], f32)]))
    write("safetensors", "bad_deep", struct.pack("<Q", 200) + (b"[" * 100 + b"]" * 100))


def tiny_config():
    return {"model": {"resolution": 8, "ch": 32, "ch_mult": [1], "z_channels": 32, "embed_dim": 4},
            "quantizer": {"n_embed": 8},
            "loss": {"disc_start": 1, "disc_ndf": 8, "disc_layers": 1}}


def checkpoint_seeds(build):
    work = tempfile.mkdtemp()
    try:
        with open(os.path.join(work, "config.json"), "w") as f:
            json.dump(tiny_config(), f)
        subprocess.run([os.path.join(build, "bin", "train_vqvae_improved"), "--config",
                        os.path.join(work, "config.json"), "--model_dir", work, "--model_name", "tiny",
                        "--sample_dir", work, "--epochs", "1", "--steps_per_epoch", "2", "--batch_size", "4",
                        "--val_limit", "4", "--num_samples", "1", "--image_size", "8"],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(work, "tiny.last.safetensors"), "rb") as f:
            last = f.read()
        with open(os.path.join(work, "tiny.safetensors"), "rb") as f:
            best = f.read()
    finally:
        shutil.rmtree(work)
    write("checkpoint", "valid_last", last)
    write("checkpoint", "valid_best", best)
    state = json.dumps({"version": 2, "step": 1, "epoch": 0, "best_val_loss": None})
    huge = tiny_config()
    huge["model"]["ch"] = 4096
    write("checkpoint", "bad_config_asks_too_much", safetensors(
        [("w", "F32", [1], struct.pack("<f", 1))],
        {"vqgan.training_state": state, "vqgan.config": json.dumps(huge)}))
    write("checkpoint", "bad_nan", safetensors(
        [("quantize.embedding.weight", "F32", [2, 1], struct.pack("<2f", 1.0, float("nan")))],
        {"vqgan.training_state": state, "vqgan.config": json.dumps(tiny_config())}))
    write("checkpoint", "bad_state", safetensors([], {"vqgan.training_state": '{"step":-1}'}))


def png(width, height, channels, pixels):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    colour = {1: 0, 3: 2}[channels]
    rows = b"".join(b"\0" + pixels[y * width * channels:(y + 1) * width * channels] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def stb_jpeg():
    """A 12x10 RGB JPEG written by stb_image_write (compiled with the C compiler)."""
    source = r'''
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#include <stdio.h>
static void out(void* c, void* d, int n) { fwrite(d, 1, n, stdout); }
int main(void) {
  unsigned char px[12 * 10 * 3];
  for (int i = 0; i < 12 * 10 * 3; ++i) px[i] = (unsigned char)(i * 7);
  return !stbi_write_jpg_to_func(out, 0, 12, 10, 3, px, 90);
}'''
    work = tempfile.mkdtemp()
    try:
        with open(os.path.join(work, "w.c"), "w") as f:
            f.write(source)
        subprocess.run(["cc", "-O1", "-o", os.path.join(work, "w"), os.path.join(work, "w.c"), "-lm"], check=True)
        return subprocess.run([os.path.join(work, "w")], check=True, capture_output=True).stdout
    finally:
        shutil.rmtree(work)


def image_seeds():
    # The first byte of every input picks grey/RGB, the target size and the flip (fuzz_image.cpp).
    grey = bytes((x * 16 + y * 3) % 256 for y in range(6) for x in range(9))
    rgb = bytes((i * 5) % 256 for i in range(7 * 5 * 3))
    write("image", "png_grey", b"\x00" + png(9, 6, 1, grey))
    write("image", "png_rgb", b"\x0b" + png(7, 5, 3, rgb))
    write("image", "jpeg_rgb", b"\x01" + stb_jpeg())
    bmp_rows = b"".join(rgb[y * 21:(y + 1) * 21] + b"\0\0\0" for y in range(5))  # rows padded to 4
    write("image", "bmp_rgb", b"\x03" + b"BM" + struct.pack("<IHHI", 54 + len(bmp_rows), 0, 0, 54) +
          struct.pack("<IiiHHIIiiII", 40, 7, 5, 1, 24, 0, len(bmp_rows), 2835, 2835, 0, 0) + bmp_rows)
    write("image", "tga_grey", b"\x02" + struct.pack("<BBBHHBHHHHBB", 0, 0, 3, 0, 0, 0, 0, 0, 9, 6, 8, 0) + grey)
    write("image", "pgm_grey", b"\x04" + b"P5\n9 6\n255\n" + grey)
    write("image", "ppm_rgb", b"\x05" + b"P6\n7 5\n255\n" + rgb)
    # A 2x2 GIF: global colour table of 2 entries, one image, LZW minimum code size 2.
    write("image", "gif_2x2", b"\x00" + b"GIF89a" + struct.pack("<HHBBB", 2, 2, 0x80, 0, 0) +
          b"\0\0\0\xff\xff\xff" + b"," + struct.pack("<HHHHB", 0, 0, 2, 2, 0) + b"\x02\x02\x44\x01\x00;")
    write("image", "bad_huge_png", b"\x00" + png(1, 1, 1, b"\0")[:16] + struct.pack(">II", 65535, 65535) +
          b"\x08\0\0\0\0" + b"\0" * 4)
    write("image", "bad_psd", b"\x00" + b"8BPS" + b"\0\x01" + b"\0" * 40)
    write("image", "bad_truncated_png", b"\x00" + png(9, 6, 1, grey)[:40])


def idx_seeds():
    images = struct.pack(">IIII", 0x803, 2, 3, 3) + bytes(range(18))
    labels = struct.pack(">II", 0x801, 3) + b"\x01\x02\x09"
    write("idx", "images", images)
    write("idx", "images_gz", gzip.compress(images, mtime=0))
    write("idx", "labels_gz", gzip.compress(labels, mtime=0))
    write("idx", "bad_truncated_gz", gzip.compress(images, mtime=0)[:-9])
    write("idx", "bad_count", struct.pack(">IIII", 0x803, 0xFFFFFFFF, 16384, 16384))
    write("idx", "bad_zero_rows", struct.pack(">IIII", 0x803, 2, 0, 3))


def config_seeds():
    write("config", "quantizer", json.dumps({"quantizer": {"n_embed": 32, "temperature": 0.5}}))
    write("config", "every_group", json.dumps({
        "model": {"resolution": 64, "ch": 64, "ch_mult": [1, 2, 2, 4], "attn_resolutions": [16]},
        "quantizer": {"kind": "vq", "codebook": "learned", "l2_normalize": True, "init": "kmeans",
                      "fsq_levels": [8, 5, 5, 5]},
        "loss": {"disc_start": 10, "perceptual_weight": 0.5},
        "training": {"lr_schedule": "cosine", "batch_size": 8, "epochs": 2}}))
    write("config", "fsq", json.dumps({"quantizer": {"kind": "fsq", "fsq_levels": [2, 2, 2]}}))
    write("config", "bad_type", json.dumps({"quantizer": {"n_embed": 1.5}}))
    write("config", "bad_unknown_key", json.dumps({"model": {"chh": 3}}))
    write("config", "bad_duplicate", '{"model": {"ch": 32}, "model": {"ch": 64}}')
    write("config", "bad_huge_model", json.dumps({"model": {"ch": 131072}}))
    write("config", "bad_deep", "[" * 100 + "]" * 100)


def flags_seeds():
    write("flags", "types", "--text\nhello\n--count=-3\n--rate\n1e-3\n--on\n--limited\n7")
    write("flags", "bool_value", "--on=false\n--text=a=b")
    write("flags", "help", "--help")
    write("flags", "bad_below_min", "--limited\n1")
    write("flags", "bad_unknown", "--cuont\n3")
    write("flags", "bad_missing_value", "--count")
    write("flags", "bad_number", "--rate\n1.5x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build")
    args = parser.parse_args()
    safetensors_seeds()
    checkpoint_seeds(args.build)
    image_seeds()
    idx_seeds()
    config_seeds()
    flags_seeds()


if __name__ == "__main__":
    main()
