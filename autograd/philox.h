// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a
// counter-based generator. The value for element i depends only on (seed, counter), never on
// which thread or device computes it, so random tensors are identical on 1 or 64 threads and on
// CPU and GPU. Written once as host/device code; the CPU and CUDA kernels both include it.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define VQ_HD __host__ __device__ __forceinline__
#else
#define VQ_HD [[gnu::always_inline]] inline
#endif

namespace vq {

struct Philox4 {
  uint32_t v[4];
};

VQ_HD Philox4 philox4x32_10(uint64_t counter, uint64_t seed) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 random bits (exactly representable in float).
VQ_HD float philox_uniform01(uint32_t bits) { return (bits >> 8) * (1.0f / 16777216.0f); }

// Element i of a uniform stream starting at `offset`: four elements share one Philox call.
VQ_HD float philox_uniform_at(uint64_t seed, uint64_t offset, uint64_t i) {
  const Philox4 r = philox4x32_10(offset + (i >> 2), seed);
  return philox_uniform01(r.v[i & 3]);
}

// Element i of a standard-normal stream (Box-Muller on two uniforms; two elements per call).
// NOTE: u1 is taken from (0, 1] so log(u1) is finite.
VQ_HD float philox_normal_at(uint64_t seed, uint64_t offset, uint64_t i) {
  const Philox4 r = philox4x32_10(offset + (i >> 1), seed);
  const int lane = static_cast<int>(i & 1) * 2;
  const float u1 = ((r.v[lane] >> 8) + 1) * (1.0f / 16777216.0f);
  const float u2 = philox_uniform01(r.v[lane + 1]);
  const float radius = sqrtf(-2.0f * logf(u1));
  return radius * cosf(6.283185307179586f * u2);
}

// lo + scale * u with one rounding (a fused multiply-add) on every compiler and device, so the
// CPU and CUDA random tensors are equal bit for bit whatever each compiler would contract.
VQ_HD float philox_affine(float lo, float scale, float u) { return fmaf(scale, u, lo); }
VQ_HD double philox_affine(double lo, double scale, double u) { return fma(scale, u, lo); }

// Counters a stream of n elements consumes (uniform: 4 per call, normal: 2 per call).
VQ_HD uint64_t philox_uniform_counters(uint64_t n) { return (n + 3) / 4; }
VQ_HD uint64_t philox_normal_counters(uint64_t n) { return (n + 1) / 2; }

}  // namespace vq
