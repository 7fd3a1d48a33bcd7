#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, everything scripts/gpu_check.sh needs on a GPU machine that
# has nvcc, CMake and PyTorch but none of our Debian packages, and packs it into one file:
#
#   gpu_carry/vq_gpu.tar.xz     (git-ignored; name `gpu_carry` in the device tool's carry)
#     vq_gpu/bin/   test_cuda, train_vqvae_improved, bench_ops, bench_train_step: Release,
#                   VQ_NATIVE=OFF (the GPU host's CPU is not ours), CUDA code for sm_90, stripped
#     vq_gpu/lib/   the libraries they load that are ours to bring: oneDNN, fmt, stb, the OpenCL
#                   loader oneDNN links, Google Benchmark, GCC's OpenMP runtime
#     vq_gpu/lib/compat/  GCC 12's libstdc++ and libgcc_s, used only where the host's libstdc++ is
#                   older than GCC 12's (it needs glibc 2.36, so it is no default)
#     vq_gpu/data/  Fashion-MNIST's test images (for the 20-step training comparison)
#     vq_gpu/MANIFEST   commit, date, sizes and sha256 of every file
#
# cuBLAS, cuDNN and the CUDA runtime are NOT packed: on the GPU machine gpu_check.sh loads that
# machine's own (the ones in its PyTorch venv), which match its driver.
#
#   scripts/gpu_carry.sh                 # build into build-gpu/ and pack
#   CUDA_ARCH=80 scripts/gpu_carry.sh    # for an A100 instead of an H100/H200
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build-gpu}
CUDA_ARCH=${CUDA_ARCH:-90}
OUT_DIR=${OUT_DIR:-gpu_carry}
LIMIT_MIB=60  # the device tool carries at most 64 MiB in all
PROGRAMS=(test_cuda train_vqvae_improved bench_ops bench_train_step)
start=$SECONDS

command -v nvcc >/dev/null || { echo "gpu_carry: nvcc not found (the CUDA toolkit is needed to build)"; exit 1; }
echo "== gpu_carry: building ${PROGRAMS[*]} for sm_${CUDA_ARCH} in $BUILD_DIR"
mkdir -p "$BUILD_DIR"
# Single-process programs (-DVQ_MPI=OFF): a GPU host has no Open MPI, and one GPU cannot run two
# NCCL ranks anyway; NCCL itself is still built (its one-rank test runs there).
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVQ_CUDA=ON -DVQ_MPI=OFF -DVQ_NATIVE=OFF \
  -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" -DVQ_WERROR=ON > "$BUILD_DIR/configure.log" \
  || { cat "$BUILD_DIR/configure.log"; exit 1; }
cmake --build "$BUILD_DIR" --target "${PROGRAMS[@]}"
echo "== gpu_carry: built in $((SECONDS - start)) s"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/vq_gpu"
mkdir -p "$root/bin" "$root/lib" "$root/data"
for p in "${PROGRAMS[@]}"; do
  cp "$BUILD_DIR/bin/$p" "$root/bin/"
  strip "$root/bin/$p"
done

# Libraries: whatever the programs load, except glibc's own (the host's must be used), zlib (on
# every Linux) and CUDA's (the host's, to match its driver; NCCL too, which PyTorch brings).
skip='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libz|libstdc\+\+|libgcc_s|libcudart|libcublas|libcublasLt|libcudnn[a-z_]*|libnccl)\.so'
for p in "${PROGRAMS[@]}"; do ldd "$root/bin/$p"; done | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' \
  | sort -u | while read -r soname path; do
    if ! grep -Eq "$skip" <<<"$soname"; then cp -L "$path" "$root/lib/$soname"; fi
  done
# oneDNN loads the OpenCL loader too.
for lib in "$root"/lib/*; do ldd "$lib"; done | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' \
  | sort -u | while read -r soname path; do
    if ! grep -Eq "$skip" <<<"$soname" && [ ! -e "$root/lib/$soname" ]; then cp -L "$path" "$root/lib/$soname"; fi
  done
mkdir -p "$root/lib/compat"
for soname in libstdc++.so.6 libgcc_s.so.1; do
  cp -L "$(ldconfig -p | awk -v s="$soname" '$1 == s && /x86-64/ {print $NF; exit}')" "$root/lib/compat/$soname"
done
cp /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz "$root/data/"

{
  echo "vqgan.cpp GPU carry: commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)'), built $(date -u +%Y-%m-%dT%H:%MZ) for sm_${CUDA_ARCH}"
  (cd "$root" && find bin lib data -type f -print0 | sort -z | xargs -0 sha256sum)
} > "$root/MANIFEST"

mkdir -p "$OUT_DIR"
tar -C "$stage" -cJf "$OUT_DIR/vq_gpu.tar.xz.part" vq_gpu
size_mib=$(( $(stat -c %s "$OUT_DIR/vq_gpu.tar.xz.part") / 1048576 ))
if [ "$size_mib" -gt "$LIMIT_MIB" ]; then
  rm -f "$OUT_DIR/vq_gpu.tar.xz.part"
  echo "gpu_carry: ${size_mib} MiB is larger than ${LIMIT_MIB} MiB: it would not travel"
  exit 1
fi
mv "$OUT_DIR/vq_gpu.tar.xz.part" "$OUT_DIR/vq_gpu.tar.xz"
echo "== gpu_carry: $OUT_DIR/vq_gpu.tar.xz, ${size_mib} MiB ($(du -sm "$root" | cut -f1) MiB unpacked), $((SECONDS - start)) s in all"
