// Elementwise CUDA kernels: fill, arange, the Philox random streams, and the unary /
// unary-backward / binary / compare / where families over Strided<N> operands (copies are in
// copy.cu). The scalar math is the CPU's own (elementwise_math.h, philox.h), so the two backends
// compute the same expressions; dense operands index directly, others through strided_offsets.
// Size letters: n elements. float16/bfloat16 are storage types: only copy and fill touch them.
// Indices are 32-bit where n < 2^31 (dispatch_index), and dense float32 unary/binary operands go
// four elements per thread (dense4_kernel); VQ_VECTOR_ELEMENTWISE=0 turns both off.
// NOTE: both compilers may fuse a*b+c into one FMA, differently, so float results may differ in
// the last bit; the random streams use philox_affine (an explicit FMA on both sides), so
// uniform() and normal()'s affine step match the CPU bit for bit.
#include <type_traits>

#include "cuda/float16.cuh"
#include "cuda/launch.cuh"

namespace vq::cuda {

namespace {

template <class T, class I>
__global__ void fill_kernel(Strided<1> s, I n, T value) {
  T* out = static_cast<T*>(s.data[0]);
  if (s.dense) {
    VQ_GRID_LOOP_AS(I, i, n) out[i] = value;
    return;
  }
  VQ_GRID_LOOP_AS(I, i, n) {
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

template <class T, class I>
__global__ void unary_kernel(Strided<2> s, I n, UnaryOp op, UnaryParams p) {
  T* out = static_cast<T*>(s.data[0]);
  const T* x = static_cast<const T*>(s.data[1]);
  if (s.dense) {
    VQ_GRID_LOOP_AS(I, i, n) out[i] = unary_forward<T>(op, x[i], p);
    return;
  }
  VQ_GRID_LOOP_AS(I, i, n) {
    int64_t o[2];
    strided_offsets(s, i, o);
    out[o[0]] = unary_forward<T>(op, x[o[1]], p);
  }
}

// dx = dout * d(op)/dx, the derivative taken from `saved` (the op's input or output).
template <class T, class I>
__global__ void unary_backward_kernel(Strided<3> s, I n, UnaryOp op, UnaryParams p) {
  T* dx = static_cast<T*>(s.data[0]);
  const T* dout = static_cast<const T*>(s.data[1]);
  const T* saved = static_cast<const T*>(s.data[2]);
  if (s.dense) {
    VQ_GRID_LOOP_AS(I, i, n) dx[i] = dout[i] * unary_derivative<T>(op, saved[i], p);
    return;
  }
  VQ_GRID_LOOP_AS(I, i, n) {
    int64_t o[3];
    strided_offsets(s, i, o);
    dx[o[0]] = dout[o[1]] * unary_derivative<T>(op, saved[o[2]], p);
  }
}

template <class T, class I>
__global__ void binary_kernel(Strided<3> s, I n, BinaryOp op) {
  T* out = static_cast<T*>(s.data[0]);
  const T* a = static_cast<const T*>(s.data[1]);
  const T* b = static_cast<const T*>(s.data[2]);
  if (s.dense) {
    VQ_GRID_LOOP_AS(I, i, n) out[i] = binary_forward<T>(op, a[i], b[i]);
    return;
  }
  VQ_GRID_LOOP_AS(I, i, n) {
    int64_t o[3];
    strided_offsets(s, i, o);
    out[o[0]] = binary_forward<T>(op, a[o[1]], b[o[2]]);
  }
}

template <class T, class I>
__global__ void compare_kernel(Strided<3> s, I n, CompareOp op) {
  uint8_t* out = static_cast<uint8_t*>(s.data[0]);
  const T* a = static_cast<const T*>(s.data[1]);
  const T* b = static_cast<const T*>(s.data[2]);
  VQ_GRID_LOOP_AS(I, i, n) {
    int64_t o[3];
    strided_offsets(s, i, o);
    out[o[0]] = vq::compare<T>(op, a[o[1]], b[o[2]]);
  }
}

template <class T, class I>
__global__ void where_kernel(Strided<4> s, I n) {
  T* out = static_cast<T*>(s.data[0]);
  const uint8_t* cond = static_cast<const uint8_t*>(s.data[1]);
  const T* a = static_cast<const T*>(s.data[2]);
  const T* b = static_cast<const T*>(s.data[3]);
  VQ_GRID_LOOP_AS(I, i, n) {
    int64_t o[4];
    strided_offsets(s, i, o);
    out[o[0]] = cond[o[1]] ? a[o[2]] : b[o[3]];
  }
}

// ---- dense float32 operands: four elements per thread ----
// Where every operand is dense and 16-byte aligned (the common case: activations and their
// gradients) and n < 2^31: float4 loads and stores and 32-bit indices. f computes one element
// from its K input values with the scalar kernels' own math, so the bits are theirs. The output
// may be an input (in place): each thread reads its four elements before writing them.

template <int K>
struct Dense4 {
  float* out;
  const float* in[K];
};

__device__ __forceinline__ float lane_of(const float4& v, int j) {
  return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
}

template <int K, class F>
__global__ void dense4_kernel(Dense4<K> d, int n, F f) {
  const int quads = n / 4;
  for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < quads; q += gridDim.x * blockDim.x) {
    float4 v[K];
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] = reinterpret_cast<const float4*>(d.in[k])[q];
    float r[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float a[K];
#pragma unroll
      for (int k = 0; k < K; ++k) a[k] = lane_of(v[k], j);
      r[j] = f(a);
    }
    reinterpret_cast<float4*>(d.out)[q] = make_float4(r[0], r[1], r[2], r[3]);
  }
  // The last n % 4 elements, one thread each.
  const int i = quads * 4 + static_cast<int>(threadIdx.x);
  if (blockIdx.x == 0 && i < n) {
    float a[K];
#pragma unroll
    for (int k = 0; k < K; ++k) a[k] = d.in[k][i];
    d.out[i] = f(a);
  }
}

struct UnaryFn {
  UnaryOp op;
  UnaryParams p;
  __device__ float operator()(const float (&a)[1]) const {
    return unary_forward<float>(op, a[0], p);
  }
};
struct UnaryBackwardFn {
  UnaryOp op;
  UnaryParams p;
  __device__ float operator()(const float (&a)[2]) const {
    return a[0] * unary_derivative<float>(op, a[1], p);
  }
};
struct BinaryFn {
  BinaryOp op;
  __device__ float operator()(const float (&a)[2]) const {
    return binary_forward<float>(op, a[0], a[1]);
  }
};

// Runs dense4_kernel where it applies (float32, every operand dense and aligned, n < 2^31);
// false otherwise.
template <class T, int N, class F>
bool try_dense4(const Strided<N>& s, int64_t n, F f) {
  if constexpr (!std::is_same_v<T, float>) {
    return false;
  } else {
    if (!vector_elementwise() || !s.dense || n >= (int64_t{1} << 31)) return false;
    for (int k = 0; k < N; ++k) {
      if (!aligned(s.data[k], sizeof(float4))) return false;
    }
    Dense4<N - 1> d{};
    d.out = static_cast<float*>(s.data[0]);
    for (int k = 1; k < N; ++k) d.in[k - 1] = static_cast<const float*>(s.data[k]);
    dense4_kernel<N - 1, F>
        <<<grid_for(std::max<int64_t>(n / 4, 1)), kThreads>>>(d, static_cast<int>(n), f);
    VQ_CUDA_CHECK_LAUNCH("dense4_kernel");
    return true;
  }
}

}  // namespace

void launch_fill(const Strided<1>& s, int64_t n, DType dtype, double value) {
  dispatch_storage(dtype, [&](auto tag) {
    using T = decltype(tag);
    dispatch_index(n, !vector_elementwise(), [&](auto itag) {
      using I = decltype(itag);
      launch_1d("fill_kernel", n, fill_kernel<T, I>, s, n, from_double<T>(value));
    });
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
    if (n > 0 && try_dense4<T>(s, n, UnaryFn{op, p})) return;
    dispatch_index(n, !vector_elementwise(), [&](auto itag) {
      using I = decltype(itag);
      launch_1d("unary_kernel", n, unary_kernel<T, I>, s, n, op, p);
    });
  });
}

void launch_unary_backward(UnaryOp op, UnaryParams p, DType dtype, const Strided<3>& s, int64_t n) {
  dispatch_floating(dtype, "unary op backward", [&](auto tag) {
    using T = decltype(tag);
    if (n > 0 && try_dense4<T>(s, n, UnaryBackwardFn{op, p})) return;
    dispatch_index(n, !vector_elementwise(), [&](auto itag) {
      using I = decltype(itag);
      launch_1d("unary_backward_kernel", n, unary_backward_kernel<T, I>, s, n, op, p);
    });
  });
}

void launch_binary(BinaryOp op, DType dtype, const Strided<3>& s, int64_t n) {
  dispatch_arith(dtype, "binary op", [&](auto tag) {
    using T = decltype(tag);
    if (n > 0 && try_dense4<T>(s, n, BinaryFn{op})) return;
    dispatch_index(n, !vector_elementwise(), [&](auto itag) {
      using I = decltype(itag);
      launch_1d("binary_kernel", n, binary_kernel<T, I>, s, n, op);
    });
  });
}

void launch_compare(CompareOp op, DType in_dtype, const Strided<3>& s, int64_t n) {
  dispatch_arith(in_dtype, "compare", [&](auto tag) {
    using T = decltype(tag);
    dispatch_index(n, !vector_elementwise(), [&](auto itag) {
      using I = decltype(itag);
      launch_1d("compare_kernel", n, compare_kernel<T, I>, s, n, op);
    });
  });
}

void launch_where(DType dtype, const Strided<4>& s, int64_t n) {
  dispatch_arith(dtype, "where", [&](auto tag) {
    using T = decltype(tag);
    dispatch_index(n, !vector_elementwise(), [&](auto itag) {
      using I = decltype(itag);
      launch_1d("where_kernel", n, where_kernel<T, I>, s, n);
    });
  });
}

cudaError_t probe_kernel_image() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, fill_kernel<uint8_t, uint32_t>);
}

}  // namespace vq::cuda
