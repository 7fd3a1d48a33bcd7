// Elementwise CUDA kernels: dtype-converting copy, fill, arange, the Philox random streams, and
// the unary / unary-backward / binary / compare / where families over Strided<N> operands.
// The scalar math is the CPU's own (elementwise_math.h, philox.h), so the two backends compute
// the same expressions; dense operands index directly, others through strided_offsets.
// Size letters: n elements. float16/bfloat16 are storage types: only copy and fill touch them.
// NOTE: both compilers may fuse a*b+c into one FMA, differently, so float results may differ in
// the last bit; the random streams use philox_affine (an explicit FMA on both sides), so
// uniform() and normal()'s affine step match the CPU bit for bit.
#include <type_traits>

#include "autograd/switches.h"
#include "cuda/launch.cuh"

namespace vq::cuda {

namespace {

// ---- storage types and conversions (the CPU's semantics: through double, halves via float) ----

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

// Same-dtype copies move raw bits of the element's size (NaN payloads survive, as in memcpy).
template <class F>
void dispatch_bits(size_t size, F&& f) {
  switch (size) {
    case 1: f(uint8_t{}); return;
    case 2: f(uint16_t{}); return;
    case 4: f(uint32_t{}); return;
    default: f(uint64_t{}); return;
  }
}

// ---- kernels ----

template <class D, class S>
__global__ void copy_kernel(Strided<2> s, int64_t n) {
  D* out = static_cast<D*>(s.data[0]);
  const S* in = static_cast<const S*>(s.data[1]);
  auto convert = [](S v) -> D {
    if constexpr (std::is_same_v<D, S>) {
      return v;
    } else {
      return from_double<D>(to_double(v));
    }
  };
  if (s.dense) {
    VQ_GRID_LOOP(i, n) out[i] = convert(in[i]);
    return;
  }
  VQ_GRID_LOOP(i, n) {
    int64_t o[2];
    strided_offsets(s, i, o);
    out[o[0]] = convert(in[o[1]]);
  }
}

// ---- dense float32 <-> bfloat16/float16 conversion, four elements per thread ----
// The casts autocast makes around every convolution: vector loads and stores (float4, ushort4),
// 32-bit indices, and the same rounding functions as copy_kernel (so the bits agree).

template <class T>
struct Vec4 {
  using type = ushort4;  // BFloat16, Half: four 16-bit bit patterns
};
template <>
struct Vec4<float> {
  using type = float4;
};

template <class S, class C>
__device__ __forceinline__ float lane_to_float(C lane) {
  if constexpr (std::is_same_v<S, BFloat16>) {
    return bf16_to_float(lane);
  } else if constexpr (std::is_same_v<S, Half>) {
    return half_to_float(lane);
  } else {
    return lane;
  }
}

template <class D>
__device__ __forceinline__ auto float_to_lane(float f) {
  if constexpr (std::is_same_v<D, BFloat16>) {
    return static_cast<unsigned short>(float_to_bf16(f));
  } else if constexpr (std::is_same_v<D, Half>) {
    return static_cast<unsigned short>(float_to_half(f));
  } else {
    return f;
  }
}

template <class D, class S>
__global__ void convert4_kernel(D* __restrict__ out, const S* __restrict__ in, int n) {
  using VS = typename Vec4<S>::type;
  using VD = typename Vec4<D>::type;
  const int quads = n / 4;
  for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < quads; q += gridDim.x * blockDim.x) {
    const VS v = reinterpret_cast<const VS*>(in)[q];
    VD r;
    r.x = float_to_lane<D>(lane_to_float<S>(v.x));
    r.y = float_to_lane<D>(lane_to_float<S>(v.y));
    r.z = float_to_lane<D>(lane_to_float<S>(v.z));
    r.w = float_to_lane<D>(lane_to_float<S>(v.w));
    reinterpret_cast<VD*>(out)[q] = r;
  }
  // The last n % 4 elements, one thread each.
  const int i = quads * 4 + static_cast<int>(threadIdx.x);
  if (blockIdx.x == 0 && i < n) {
    const auto lane = reinterpret_cast<const decltype(VS{}.x)*>(in)[i];
    reinterpret_cast<decltype(VD{}.x)*>(out)[i] = float_to_lane<D>(lane_to_float<S>(lane));
  }
}

// VQ_VECTOR_CASTS=0: every conversion through copy_kernel (to compare on a GPU).
bool vectorized_casts() {
  static const bool on = env_switch("VQ_VECTOR_CASTS", true);
  return on;
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Runs convert4_kernel where it applies (dense, float32 on one side, a 16-bit float on the other,
// aligned for vector access, under 2^31 elements); false otherwise.
template <class D, class S>
bool try_convert4(const Strided<2>& s, int64_t n) {
  constexpr bool pair =
      (std::is_same_v<S, float> && (std::is_same_v<D, BFloat16> || std::is_same_v<D, Half>)) ||
      (std::is_same_v<D, float> && (std::is_same_v<S, BFloat16> || std::is_same_v<S, Half>));
  if constexpr (!pair) {
    return false;
  } else {
    if (!s.dense || n >= (int64_t{1} << 31) || !aligned(s.data[0], 4 * sizeof(D)) ||
        !aligned(s.data[1], 4 * sizeof(S))) {
      return false;
    }
    convert4_kernel<D, S><<<grid_for(std::max<int64_t>(n / 4, 1)), kThreads>>>(
        static_cast<D*>(s.data[0]), static_cast<const S*>(s.data[1]), static_cast<int>(n));
    VQ_CUDA_CHECK_LAUNCH("convert4_kernel");
    return true;
  }
}

template <class T>
__global__ void fill_kernel(Strided<1> s, int64_t n, T value) {
  T* out = static_cast<T*>(s.data[0]);
  if (s.dense) {
    VQ_GRID_LOOP(i, n) out[i] = value;
    return;
  }
  VQ_GRID_LOOP(i, n) {
    int64_t o[1];
    strided_offsets(s, i, o);
    out[o[0]] = value;
  }
}

template <class T>
__global__ void arange_kernel(T* out, int64_t n, int64_t start) {
  VQ_GRID_LOOP(i, n) out[i] = static_cast<T>(start + i);
}

template <class T>
__global__ void uniform_kernel(T* out, int64_t n, T lo, T scale, uint64_t seed, uint64_t offset) {
  VQ_GRID_LOOP(i, n) {
    out[i] = philox_affine(lo, scale, static_cast<T>(philox_uniform_at(seed, offset, i)));
  }
}

template <class T>
__global__ void normal_kernel(T* out, int64_t n, T mean, T std, uint64_t seed, uint64_t offset) {
  VQ_GRID_LOOP(i, n) {
    out[i] = philox_affine(mean, std, static_cast<T>(philox_normal_at(seed, offset, i)));
  }
}

template <class T>
__global__ void unary_kernel(Strided<2> s, int64_t n, UnaryOp op, UnaryParams p) {
  T* out = static_cast<T*>(s.data[0]);
  const T* x = static_cast<const T*>(s.data[1]);
  if (s.dense) {
    VQ_GRID_LOOP(i, n) out[i] = unary_forward<T>(op, x[i], p);
    return;
  }
  VQ_GRID_LOOP(i, n) {
    int64_t o[2];
    strided_offsets(s, i, o);
    out[o[0]] = unary_forward<T>(op, x[o[1]], p);
  }
}

// dx = dout * d(op)/dx, the derivative taken from `saved` (the op's input or output).
template <class T>
__global__ void unary_backward_kernel(Strided<3> s, int64_t n, UnaryOp op, UnaryParams p) {
  T* dx = static_cast<T*>(s.data[0]);
  const T* dout = static_cast<const T*>(s.data[1]);
  const T* saved = static_cast<const T*>(s.data[2]);
  if (s.dense) {
    VQ_GRID_LOOP(i, n) dx[i] = dout[i] * unary_derivative<T>(op, saved[i], p);
    return;
  }
  VQ_GRID_LOOP(i, n) {
    int64_t o[3];
    strided_offsets(s, i, o);
    dx[o[0]] = dout[o[1]] * unary_derivative<T>(op, saved[o[2]], p);
  }
}

template <class T>
__global__ void binary_kernel(Strided<3> s, int64_t n, BinaryOp op) {
  T* out = static_cast<T*>(s.data[0]);
  const T* a = static_cast<const T*>(s.data[1]);
  const T* b = static_cast<const T*>(s.data[2]);
  if (s.dense) {
    VQ_GRID_LOOP(i, n) out[i] = binary_forward<T>(op, a[i], b[i]);
    return;
  }
  VQ_GRID_LOOP(i, n) {
    int64_t o[3];
    strided_offsets(s, i, o);
    out[o[0]] = binary_forward<T>(op, a[o[1]], b[o[2]]);
  }
}

template <class T>
__global__ void compare_kernel(Strided<3> s, int64_t n, CompareOp op) {
  uint8_t* out = static_cast<uint8_t*>(s.data[0]);
  const T* a = static_cast<const T*>(s.data[1]);
  const T* b = static_cast<const T*>(s.data[2]);
  VQ_GRID_LOOP(i, n) {
    int64_t o[3];
    strided_offsets(s, i, o);
    out[o[0]] = vq::compare<T>(op, a[o[1]], b[o[2]]);
  }
}

template <class T>
__global__ void where_kernel(Strided<4> s, int64_t n) {
  T* out = static_cast<T*>(s.data[0]);
  const uint8_t* cond = static_cast<const uint8_t*>(s.data[1]);
  const T* a = static_cast<const T*>(s.data[2]);
  const T* b = static_cast<const T*>(s.data[3]);
  VQ_GRID_LOOP(i, n) {
    int64_t o[4];
    strided_offsets(s, i, o);
    out[o[0]] = cond[o[1]] ? a[o[2]] : b[o[3]];
  }
}

}  // namespace

void launch_copy(const Strided<2>& s, int64_t n, DType dst, DType src) {
  if (dst == src) {
    dispatch_bits(dtype_size(dst), [&](auto tag) {
      using U = decltype(tag);
      launch_1d("copy_kernel", n, copy_kernel<U, U>, s, n);
    });
    return;
  }
  dispatch_storage(dst, [&](auto dtag) {
    dispatch_storage(src, [&](auto stag) {
      using D = decltype(dtag);
      using S = decltype(stag);
      if constexpr (!std::is_same_v<D, S>) {
        if (n > 0 && vectorized_casts() && try_convert4<D, S>(s, n)) return;
        launch_1d("copy_kernel", n, copy_kernel<D, S>, s, n);
      }
    });
  });
}

void launch_fill(const Strided<1>& s, int64_t n, DType dtype, double value) {
  dispatch_storage(dtype, [&](auto tag) {
    using T = decltype(tag);
    launch_1d("fill_kernel", n, fill_kernel<T>, s, n, from_double<T>(value));
  });
}

void launch_arange(void* dst, DType dtype, int64_t n, int64_t start) {
  dispatch_arith(dtype, "arange", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("arange_kernel", n, arange_kernel<T>, static_cast<T*>(dst), n, start);
  });
}

void launch_uniform(void* dst, DType dtype, int64_t n, double lo, double hi, uint64_t seed,
                    uint64_t offset) {
  dispatch_floating(dtype, "uniform", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("uniform_kernel", n, uniform_kernel<T>, static_cast<T*>(dst), n, static_cast<T>(lo),
              static_cast<T>(hi - lo), seed, offset);
  });
}

void launch_normal(void* dst, DType dtype, int64_t n, double mean, double std, uint64_t seed,
                   uint64_t offset) {
  dispatch_floating(dtype, "normal", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("normal_kernel", n, normal_kernel<T>, static_cast<T*>(dst), n, static_cast<T>(mean),
              static_cast<T>(std), seed, offset);
  });
}

void launch_unary(UnaryOp op, UnaryParams p, DType dtype, const Strided<2>& s, int64_t n) {
  dispatch_floating(dtype, "unary op", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("unary_kernel", n, unary_kernel<T>, s, n, op, p);
  });
}

void launch_unary_backward(UnaryOp op, UnaryParams p, DType dtype, const Strided<3>& s, int64_t n) {
  dispatch_floating(dtype, "unary op backward", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("unary_backward_kernel", n, unary_backward_kernel<T>, s, n, op, p);
  });
}

void launch_binary(BinaryOp op, DType dtype, const Strided<3>& s, int64_t n) {
  dispatch_arith(dtype, "binary op", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("binary_kernel", n, binary_kernel<T>, s, n, op);
  });
}

void launch_compare(CompareOp op, DType in_dtype, const Strided<3>& s, int64_t n) {
  dispatch_arith(in_dtype, "compare", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("compare_kernel", n, compare_kernel<T>, s, n, op);
  });
}

void launch_where(DType dtype, const Strided<4>& s, int64_t n) {
  dispatch_arith(dtype, "where", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("where_kernel", n, where_kernel<T>, s, n);
  });
}

cudaError_t probe_kernel_image() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, fill_kernel<uint8_t>);
}

}  // namespace vq::cuda
