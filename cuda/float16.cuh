// float16 and bfloat16 as the CUDA kernels store them (bit patterns in 16-bit structs) and the
// conversions between them and float/double with the CPU's semantics (through double, halves via
// float; round to nearest even), shared by copy.cu and elementwise.cu; the storage-type dispatch.
#pragma once

#include <cstring>
#include <type_traits>

#include "cuda/launch.cuh"

namespace vq::cuda {

struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

VQ_HD uint32_t bits_of(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
VQ_HD float float_of(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

VQ_HD float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0) {
    // zero or subnormal: mantissa * 2^-24 is exact in float
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return float_of(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
  return float_of(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// Round to nearest even; NaN stays a quiet NaN, overflow goes to infinity.
VQ_HD uint16_t float_to_half(float f) {
  const uint32_t bits = bits_of(f);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t biased = (bits >> 23) & 0xffu;
  uint32_t mantissa = bits & 0x7fffffu;
  if (biased == 0xffu) return static_cast<uint16_t>(sign | 0x7c00u | (mantissa ? 0x200u : 0u));
  const int32_t exponent = static_cast<int32_t>(biased) - 112;  // rebias 127 -> 15
  if (exponent >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exponent <= 0) {
    if (exponent < -10) return static_cast<uint16_t>(sign);  // below half the smallest subnormal
    mantissa |= 0x800000u;                                   // the implicit leading one
    const int shift = 14 - exponent;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(exponent) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent
  return static_cast<uint16_t>(half);
}

VQ_HD float bf16_to_float(uint16_t b) { return float_of(static_cast<uint32_t>(b) << 16); }

VQ_HD uint16_t float_to_bf16(float f) {
  uint32_t bits = bits_of(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(bits >> 16);
}

template <class T>
VQ_HD double to_double(T v) {
  if constexpr (std::is_same_v<T, Half>) {
    return half_to_float(v.bits);
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    return bf16_to_float(v.bits);
  } else {
    return static_cast<double>(v);
  }
}

template <class T>
VQ_HD T from_double(double v) {
  if constexpr (std::is_same_v<T, Half>) {
    return Half{float_to_half(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    return BFloat16{float_to_bf16(static_cast<float>(v))};
  } else {
    return static_cast<T>(v);
  }
}

template <class F>
void dispatch_storage(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float32: f(float{}); return;
    case DType::Float64: f(double{}); return;
    case DType::Int64: f(int64_t{}); return;
    case DType::UInt8: f(uint8_t{}); return;
    case DType::Float16: f(Half{}); return;
    case DType::BFloat16: f(BFloat16{}); return;
  }
  throw_unsupported_dtype("copy", dtype);
}

}  // namespace vq::cuda
