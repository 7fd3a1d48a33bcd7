// The dtype-converting copy on CUDA: any strides, any pair of dtypes (copy_kernel); dense
// float32 <-> bfloat16/float16 four elements per thread (the casts autocast makes); transposing
// copies (NCHW <-> channels-last, what channels-last convolution operands need) through
// shared-memory tiles. The conversions are the CPU's (float16.cuh), so the bits agree.
// Size letters: n elements; B batches of [A, C] matrices.
#include <type_traits>

#include "autograd/elementwise_math.h"
#include "autograd/switches.h"
#include "cuda/float16.cuh"
#include "cuda/launch.cuh"

namespace vq::cuda {

namespace {

template <class D, class S, class I>
__global__ void copy_kernel(Strided<2> s, I n) {
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
    VQ_GRID_LOOP_AS(I, i, n) out[i] = convert(in[i]);
    return;
  }
  VQ_GRID_LOOP_AS(I, i, n) {
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

// ---- batched transposes: NCHW <-> NHWC (channels-last) copies, with a cast ----
// A copy whose coalesced view is [B, A, C] with one operand row-major and the other holding each
// [A, C] matrix transposed (what copying NCHW into channels-last memory, or back, reduces to):
// 32x32 tiles through shared memory, so that both the reads and the writes are coalesced (the
// generic kernel writes with a stride of C). Values go through float: float32, bfloat16, float16.

constexpr int kTile = 32, kTileRows = 8;  // blocks of 32 x 8 threads, each moving a 32x32 tile

template <class T>
__device__ __forceinline__ float tile_in(T v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    return static_cast<float>(to_double(v));
  }
}
template <class T>
__device__ __forceinline__ T tile_out(float v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    return from_double<T>(v);
  }
}

// What the transposing copy does to each value it reads, by input row: v * scale + shift, then
// silu where asked (scale and shift [B * R], one per row of each batch; a normalisation's affine
// map). Without scale, nothing.
struct RowMap {
  const float* scale = nullptr;
  const float* shift = nullptr;
  bool silu = false;
};

// out[b][c][r] = in[b][r][c] (+ bias[c], + residual[b][c][r] where given) for in [B][R][C]
// row-major (both batches `batch` elements apart), each value first mapped by `row`. The tiles
// along R run on grid x when r_on_x (the longer side goes there: grid y and z stop at 65535),
// along C otherwise. The residual must not be `out` itself (conv2d's result is always a fresh
// tensor).
template <class D, class S>
__global__ void transpose_copy_kernel(D* __restrict__ out, const S* __restrict__ in, int R, int C,
                                      int64_t batch, const float* __restrict__ bias,
                                      const float* __restrict__ residual, RowMap row, bool r_on_x) {
  __shared__ float tile[kTile][kTile + 1];  // +1: no bank conflicts on the transposed reads
  const int64_t base = static_cast<int64_t>(blockIdx.z) * batch;
  const int tile_r = static_cast<int>(r_on_x ? blockIdx.x : blockIdx.y) * kTile;
  const int tile_c = static_cast<int>(r_on_x ? blockIdx.y : blockIdx.x) * kTile;
  const int c = tile_c + threadIdx.x;
  for (int k = threadIdx.y; k < kTile; k += kTileRows) {
    const int r = tile_r + k;
    if (r < R && c < C) {
      float v = tile_in(in[base + static_cast<int64_t>(r) * C + c]);
      if (row.scale) {
        const int64_t m = static_cast<int64_t>(blockIdx.z) * R + r;
        v = v * row.scale[m] + row.shift[m];
        if (row.silu) v = unary_forward(UnaryOp::Silu, v, {});
      }
      tile[k][threadIdx.x] = v;
    }
  }
  __syncthreads();
  const int r = tile_r + threadIdx.x;
  for (int k = threadIdx.y; k < kTile; k += kTileRows) {
    const int c_out = tile_c + k;
    if (c_out < C && r < R) {
      const int64_t o = base + static_cast<int64_t>(c_out) * R + r;
      float v = tile[threadIdx.x][k];  // no "+ 0" where nothing is added: -0 stays -0
      if (bias) v += bias[c_out];
      if (residual) v += residual[o];
      out[o] = tile_out<D>(v);
    }
  }
}

bool transpose_fits(int64_t B, int64_t R, int64_t C) {
  const int64_t shorter = std::min((R + kTile - 1) / kTile, (C + kTile - 1) / kTile);
  return R < (int64_t{1} << 31) && C < (int64_t{1} << 31) && shorter <= 65535 && B <= 65535;
}

template <class D, class S>
void launch_transpose(D* out, const S* in, int64_t B, int64_t R, int64_t C, const float* bias,
                      const float* residual, RowMap row = {}) {
  const int64_t tiles_r = (R + kTile - 1) / kTile, tiles_c = (C + kTile - 1) / kTile;
  const bool r_on_x = tiles_r > tiles_c;
  const dim3 grid(static_cast<unsigned>(r_on_x ? tiles_r : tiles_c),
                  static_cast<unsigned>(r_on_x ? tiles_c : tiles_r), static_cast<unsigned>(B));
  transpose_copy_kernel<D, S><<<grid, dim3(kTile, kTileRows)>>>(
      out, in, static_cast<int>(R), static_cast<int>(C), R * C, bias, residual, row, r_on_x);
  VQ_CUDA_CHECK_LAUNCH("transpose_copy_kernel");
}

// Runs transpose_copy_kernel where the copy is such a transpose; false otherwise.
template <class D, class S>
bool try_transpose_copy(const Strided<2>& s) {
  constexpr bool through_float =
      (std::is_same_v<D, float> || std::is_same_v<D, BFloat16> || std::is_same_v<D, Half>)&&(
          std::is_same_v<S, float> || std::is_same_v<S, BFloat16> || std::is_same_v<S, Half>);
  if constexpr (!through_float) {
    return false;
  } else {
    if (!vector_elementwise() || (s.ndim != 2 && s.ndim != 3)) return false;
    const int d = s.ndim - 2;  // the first of the two matrix dims
    const int64_t B = s.ndim == 3 ? s.sizes[0] : 1, A = s.sizes[d], C = s.sizes[d + 1];
    auto row_major = [&](int k) { return s.strides[k][d] == C && s.strides[k][d + 1] == 1; };
    auto transposed = [&](int k) { return s.strides[k][d] == 1 && s.strides[k][d + 1] == A; };
    for (int k = 0; k < 2 && s.ndim == 3; ++k) {
      if (s.strides[k][0] != A * C) return false;
    }
    // in is [R][Cin] row-major, out its transpose.
    int64_t R = 0, Cin = 0;
    if (row_major(1) && transposed(0)) {
      R = A, Cin = C;  // the source is [A][C]; the destination holds [C][A]
    } else if (row_major(0) && transposed(1)) {
      R = C, Cin = A;  // the source holds [C][A]; the destination is [A][C]
    } else {
      return false;
    }
    if (!transpose_fits(B, R, Cin)) return false;
    launch_transpose(static_cast<D*>(s.data[0]), static_cast<const S*>(s.data[1]), B, R, Cin,
                     nullptr, nullptr);
    return true;
  }
}

}  // namespace

void launch_copy(const Strided<2>& s, int64_t n, DType dst, DType src) {
  if (dst == src) {
    if (n > 0 && dst == DType::Float32 && try_transpose_copy<float, float>(s)) return;
    dispatch_bits(dtype_size(dst), [&](auto tag) {
      using U = decltype(tag);
      dispatch_index(n, !vector_elementwise(), [&](auto itag) {
        using I = decltype(itag);
        launch_1d("copy_kernel", n, copy_kernel<U, U, I>, s, n);
      });
    });
    return;
  }
  dispatch_storage(dst, [&](auto dtag) {
    dispatch_storage(src, [&](auto stag) {
      using D = decltype(dtag);
      using S = decltype(stag);
      if constexpr (!std::is_same_v<D, S>) {
        if (n > 0 && vectorized_casts() && try_convert4<D, S>(s, n)) return;
        if (n > 0 && try_transpose_copy<D, S>(s)) return;
        dispatch_index(n, !vector_elementwise(), [&](auto itag) {
          using I = decltype(itag);
          launch_1d("copy_kernel", n, copy_kernel<D, S, I>, s, n);
        });
      }
    });
  });
}

bool launch_channels_last_to_nchw(float* y, const void* x, DType x_dtype, const float* bias,
                                  const float* residual, int64_t N, int64_t C, int64_t P) {
  if (!transpose_fits(N, P, C)) return false;
  if (N * C * P == 0) return true;
  auto run = [&](auto tag) {
    using S = decltype(tag);
    launch_transpose(y, static_cast<const S*>(x), N, P, C, bias, residual);
  };
  switch (x_dtype) {
    case DType::Float32: run(float{}); return true;
    case DType::BFloat16: run(BFloat16{}); return true;
    case DType::Float16: run(Half{}); return true;
    default: throw_unsupported_dtype("channels-last result", x_dtype);
  }
}

bool channels_last_transpose_fits(int64_t N, int64_t C, int64_t S) {
  return transpose_fits(N, C, S);
}

bool launch_affine_to_channels_last(void* y, DType y_dtype, const float* x, const float* scale,
                                    const float* shift, bool silu, int64_t N, int64_t C,
                                    int64_t S) {
  if (!transpose_fits(N, C, S)) return false;
  if (N * C * S == 0) return true;
  const RowMap row{scale, shift, silu};
  switch (y_dtype) {
    case DType::BFloat16:
      launch_transpose(static_cast<BFloat16*>(y), x, N, C, S, nullptr, nullptr, row);
      return true;
    case DType::Float16:
      launch_transpose(static_cast<Half*>(y), x, N, C, S, nullptr, nullptr, row);
      return true;
    default: throw_unsupported_dtype("channels-last operand", y_dtype);
  }
}

}  // namespace vq::cuda
