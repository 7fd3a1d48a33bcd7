// Reductions over X of a contiguous [A, X, B] tensor: sum/max/min, arg max/min, and softmax /
// log-softmax with their backward. Two layouts serve every dim:
//   B == 1 (rows): one block per row of X contiguous values, a warp-shuffle block reduction;
//   B > 1 (columns): 32 x 8 blocks, x over 32 adjacent columns (coalesced loads), y over 8
//   interleaved slices of X, combined through shared memory in a fixed order.
// Like the CPU, float sums accumulate in double and max/min start from the accumulator type's
// lowest/highest value, so results agree with the CPU to (usually exactly) float rounding.
// NOTE: NaN wins max/min and argmax/argmin (the first NaN for the arg variants); ties in
// argmax/argmin pick the first index.
#include <cmath>
#include <limits>
#include <type_traits>

#include "cuda/launch.cuh"

namespace vq::cuda {

namespace {

constexpr int kSlices = 8;  // y extent of the column blocks

template <class T>
using Acc = std::conditional_t<std::is_floating_point_v<T>, double, T>;

template <class A>
__device__ __forceinline__ A combine(ReduceKind op, A acc, A v) {
  switch (op) {
    case ReduceKind::Sum: return static_cast<A>(acc + v);
    case ReduceKind::Max: return (v > acc || v != v) ? v : acc;
    case ReduceKind::Min: return (v < acc || v != v) ? v : acc;
  }
  return acc;
}

// Folds the kSlices partials of each column (fixed order); every thread gets its column's value.
template <class A, class F>
__device__ A column_reduce(A v, F f) {
  __shared__ A part[kSlices][33];
  part[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  if (threadIdx.y == 0) {
    for (int r = 1; r < kSlices; ++r) v = f(v, part[r][threadIdx.x]);
    part[0][threadIdx.x] = v;
  }
  __syncthreads();
  v = part[0][threadIdx.x];
  __syncthreads();
  return v;
}

dim3 column_grid(int64_t A, int64_t B) {
  return dim3(static_cast<unsigned>((B + 31) / 32),
              static_cast<unsigned>(std::min<int64_t>(A, 65535)));
}
unsigned row_grid(int64_t A) { return static_cast<unsigned>(std::min<int64_t>(A, 1 << 16)); }

// ---- sum / max / min ----

template <class T>
__global__ void reduce_rows_kernel(const T* x, T* out, int64_t A, int64_t X, ReduceKind op,
                                   Acc<T> init) {
  using Ac = Acc<T>;
  auto f = [op](Ac a, Ac b) { return combine(op, a, b); };
  for (int64_t a = blockIdx.x; a < A; a += gridDim.x) {
    const T* row = x + a * X;
    Ac acc = init;
    for (int64_t i = threadIdx.x; i < X; i += blockDim.x) acc = f(acc, static_cast<Ac>(row[i]));
    acc = block_reduce(acc, f, init);
    if (threadIdx.x == 0) out[a] = static_cast<T>(acc);
  }
}

template <class T>
__global__ void reduce_cols_kernel(const T* x, T* out, int64_t A, int64_t X, int64_t B,
                                   ReduceKind op, Acc<T> init) {
  using Ac = Acc<T>;
  auto f = [op](Ac a, Ac b) { return combine(op, a, b); };
  const int64_t b = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  for (int64_t a = blockIdx.y; a < A; a += gridDim.y) {
    Ac acc = init;
    if (b < B) {
      for (int64_t i = threadIdx.y; i < X; i += kSlices) {
        acc = f(acc, static_cast<Ac>(x[(a * X + i) * B + b]));
      }
    }
    acc = column_reduce(acc, f);
    if (threadIdx.y == 0 && b < B) out[a * B + b] = static_cast<T>(acc);
  }
}

// ---- sum of squares (squared_norm) ----

template <class T>
__global__ void squared_norm_partials_kernel(const T* x, int64_t n, double* partials) {
  double acc = 0.0;
  VQ_GRID_LOOP(i, n) {
    const double v = static_cast<double>(x[i]);
    acc += v * v;
  }
  acc = block_reduce(
      acc, [](double a, double b) { return a + b; }, 0.0);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// One block: each thread sums a fixed strided subset in order, then the block tree.
__global__ void sum_partials_kernel(const double* partials, int64_t count, double* out) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  acc = block_reduce(
      acc, [](double a, double b) { return a + b; }, 0.0);
  if (threadIdx.x == 0) *out = acc;
}

// ---- argmax / argmin ----

template <class T>
struct Best {
  T v;
  int64_t i;  // -1: nothing seen yet
};

// Whether q should replace p: NaN beats numbers, the better value wins, ties go to the lower
// index. Symmetric in its inputs, so any combination order gives the sequential scan's answer.
template <class T>
__device__ __forceinline__ bool prefer(const Best<T>& p, const Best<T>& q, bool min) {
  if (q.i < 0) return false;
  if (p.i < 0) return true;
  const bool pn = p.v != p.v, qn = q.v != q.v;
  if (pn || qn) return qn && (!pn || q.i < p.i);
  if (q.v == p.v) return q.i < p.i;
  return min ? q.v < p.v : q.v > p.v;
}

template <class T>
__global__ void arg_rows_kernel(const T* x, T* values, int64_t* indices, int64_t A, int64_t X,
                                bool min) {
  __shared__ Best<T> part[256];
  for (int64_t a = blockIdx.x; a < A; a += gridDim.x) {
    const T* row = x + a * X;
    Best<T> best{T(0), -1};
    for (int64_t i = threadIdx.x; i < X; i += blockDim.x) {
      const Best<T> q{row[i], i};
      if (prefer(best, q, min)) best = q;
    }
    part[threadIdx.x] = best;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
      if (threadIdx.x < half && prefer(part[threadIdx.x], part[threadIdx.x + half], min)) {
        part[threadIdx.x] = part[threadIdx.x + half];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      values[a] = part[0].v;
      indices[a] = part[0].i;
    }
    __syncthreads();
  }
}

template <class T>
__global__ void arg_cols_kernel(const T* x, T* values, int64_t* indices, int64_t A, int64_t X,
                                int64_t B, bool min) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  auto f = [min](const Best<T>& p, const Best<T>& q) { return prefer(p, q, min) ? q : p; };
  for (int64_t a = blockIdx.y; a < A; a += gridDim.y) {
    Best<T> best{T(0), -1};
    if (b < B) {
      for (int64_t i = threadIdx.y; i < X; i += kSlices)
        best = f(best, {x[(a * X + i) * B + b], i});
    }
    best = column_reduce(best, f);
    if (threadIdx.y == 0 && b < B) {
      values[a * B + b] = best.v;
      indices[a * B + b] = best.i;
    }
  }
}

// ---- softmax ----
// y = exp(x - max) / sum(exp(x - max)), or for log: y = x - (max + log(sum)). The max skips NaN
// exactly as std::max(acc, v) does on the CPU (a NaN then poisons the sum instead).

struct MaxSkipNan {
  template <class T>
  __device__ T operator()(T acc, T v) const {
    return acc < v ? v : acc;
  }
};

template <class T>
__global__ void softmax_rows_kernel(const T* x, T* y, int64_t A, int64_t X, bool log) {
  const T neg_inf = -static_cast<T>(INFINITY);
  for (int64_t a = blockIdx.x; a < A; a += gridDim.x) {
    const T* in = x + a * X;
    T* out = y + a * X;
    T mx = neg_inf;
    for (int64_t i = threadIdx.x; i < X; i += blockDim.x) mx = MaxSkipNan{}(mx, in[i]);
    mx = block_reduce(mx, MaxSkipNan{}, neg_inf);
    double total = 0;
    for (int64_t i = threadIdx.x; i < X; i += blockDim.x) total += std::exp(in[i] - mx);
    total = block_reduce(
        total, [](double p, double q) { return p + q; }, 0.0);
    if (log) {
      const T lse = mx + static_cast<T>(std::log(total));
      for (int64_t i = threadIdx.x; i < X; i += blockDim.x) out[i] = in[i] - lse;
    } else {
      const T inv = static_cast<T>(1.0 / total);
      for (int64_t i = threadIdx.x; i < X; i += blockDim.x) out[i] = std::exp(in[i] - mx) * inv;
    }
  }
}

template <class T>
__global__ void softmax_cols_kernel(const T* x, T* y, int64_t A, int64_t X, int64_t B, bool log) {
  const T neg_inf = -static_cast<T>(INFINITY);
  const int64_t b = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  const bool live = b < B;
  for (int64_t a = blockIdx.y; a < A; a += gridDim.y) {
    const T* in = x + a * X * B + b;
    T* out = y + a * X * B + b;
    T mx = neg_inf;
    if (live) {
      for (int64_t i = threadIdx.y; i < X; i += kSlices) mx = MaxSkipNan{}(mx, in[i * B]);
    }
    mx = column_reduce(mx, MaxSkipNan{});
    double total = 0;
    if (live) {
      for (int64_t i = threadIdx.y; i < X; i += kSlices) total += std::exp(in[i * B] - mx);
    }
    total = column_reduce(total, [](double p, double q) { return p + q; });
    if (!live) continue;
    if (log) {
      const T lse = mx + static_cast<T>(std::log(total));
      for (int64_t i = threadIdx.y; i < X; i += kSlices) out[i * B] = in[i * B] - lse;
    } else {
      const T inv = static_cast<T>(1.0 / total);
      for (int64_t i = threadIdx.y; i < X; i += kSlices)
        out[i * B] = std::exp(in[i * B] - mx) * inv;
    }
  }
}

// softmax:     dx = y * (dy - sum(dy * y))
// log_softmax: dx = dy - exp(y) * sum(dy)
template <class T>
__device__ __forceinline__ double softmax_dot_term(T g, T y, bool log) {
  return log ? static_cast<double>(g) : static_cast<double>(g * y);
}
template <class T>
__device__ __forceinline__ T softmax_grad(T g, T y, T dot, bool log) {
  return log ? g - std::exp(y) * dot : y * (g - dot);
}

template <class T>
__global__ void softmax_backward_rows_kernel(const T* dy, const T* y, T* dx, int64_t A, int64_t X,
                                             bool log) {
  for (int64_t a = blockIdx.x; a < A; a += gridDim.x) {
    const int64_t base = a * X;
    double dot = 0;
    for (int64_t i = threadIdx.x; i < X; i += blockDim.x) {
      dot += softmax_dot_term(dy[base + i], y[base + i], log);
    }
    dot = block_reduce(
        dot, [](double p, double q) { return p + q; }, 0.0);
    const T d = static_cast<T>(dot);
    for (int64_t i = threadIdx.x; i < X; i += blockDim.x) {
      dx[base + i] = softmax_grad(dy[base + i], y[base + i], d, log);
    }
  }
}

template <class T>
__global__ void softmax_backward_cols_kernel(const T* dy, const T* y, T* dx, int64_t A, int64_t X,
                                             int64_t B, bool log) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  const bool live = b < B;
  for (int64_t a = blockIdx.y; a < A; a += gridDim.y) {
    const int64_t base = a * X * B + b;
    double dot = 0;
    if (live) {
      for (int64_t i = threadIdx.y; i < X; i += kSlices) {
        dot += softmax_dot_term(dy[base + i * B], y[base + i * B], log);
      }
    }
    dot = column_reduce(dot, [](double p, double q) { return p + q; });
    if (!live) continue;
    const T d = static_cast<T>(dot);
    for (int64_t i = threadIdx.y; i < X; i += kSlices) {
      dx[base + i * B] = softmax_grad(dy[base + i * B], y[base + i * B], d, log);
    }
  }
}

}  // namespace

void launch_reduce(ReduceKind op, DType dtype, const void* x, void* out, int64_t A, int64_t X,
                   int64_t B) {
  if (A * B == 0) return;
  dispatch_arith(dtype, "reduce", [&](auto tag) {
    using T = decltype(tag);
    using Ac = Acc<T>;
    const Ac init = op == ReduceKind::Sum   ? Ac(0)
                    : op == ReduceKind::Max ? std::numeric_limits<Ac>::lowest()
                                            : std::numeric_limits<Ac>::max();
    const T* in = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    if (B == 1) {
      reduce_rows_kernel<T><<<row_grid(A), threads_for_row(X)>>>(in, o, A, X, op, init);
      VQ_CUDA_CHECK_LAUNCH("reduce_rows_kernel");
    } else {
      reduce_cols_kernel<T><<<column_grid(A, B), dim3(32, kSlices)>>>(in, o, A, X, B, op, init);
      VQ_CUDA_CHECK_LAUNCH("reduce_cols_kernel");
    }
  });
}

// About 16 elements per thread, at most 512 blocks (a few per SM) per tensor.
int64_t squared_norm_blocks(int64_t n) {
  return std::clamp<int64_t>((n + 16 * kThreads - 1) / (16 * kThreads), 1, 512);
}

void launch_squared_norm_partials(DType dtype, const void* x, int64_t n, double* partials) {
  if (n == 0) return;
  dispatch_floating(dtype, "squared_norm", [&](auto tag) {
    using T = decltype(tag);
    squared_norm_partials_kernel<T><<<static_cast<unsigned>(squared_norm_blocks(n)), kThreads>>>(
        static_cast<const T*>(x), n, partials);
    VQ_CUDA_CHECK_LAUNCH("squared_norm_partials_kernel");
  });
}

void launch_sum_partials(const double* partials, int64_t count, double* out) {
  sum_partials_kernel<<<1, 1024>>>(partials, count, out);
  VQ_CUDA_CHECK_LAUNCH("sum_partials_kernel");
}

void launch_arg_reduce(bool min, DType dtype, const void* x, void* values, int64_t* indices,
                       int64_t A, int64_t X, int64_t B) {
  if (A * B == 0) return;
  dispatch_arith(dtype, "argmax/argmin", [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(x);
    T* v = static_cast<T*>(values);
    if (B == 1) {
      arg_rows_kernel<T><<<row_grid(A), threads_for_row(X)>>>(in, v, indices, A, X, min);
      VQ_CUDA_CHECK_LAUNCH("arg_rows_kernel");
    } else {
      arg_cols_kernel<T><<<column_grid(A, B), dim3(32, kSlices)>>>(in, v, indices, A, X, B, min);
      VQ_CUDA_CHECK_LAUNCH("arg_cols_kernel");
    }
  });
}

void launch_softmax(DType dtype, const void* x, void* y, int64_t A, int64_t X, int64_t B,
                    bool log) {
  if (A * X * B == 0) return;
  dispatch_floating(dtype, "softmax", [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(x);
    T* out = static_cast<T*>(y);
    if (B == 1) {
      softmax_rows_kernel<T><<<row_grid(A), threads_for_row(X)>>>(in, out, A, X, log);
      VQ_CUDA_CHECK_LAUNCH("softmax_rows_kernel");
    } else {
      softmax_cols_kernel<T><<<column_grid(A, B), dim3(32, kSlices)>>>(in, out, A, X, B, log);
      VQ_CUDA_CHECK_LAUNCH("softmax_cols_kernel");
    }
  });
}

void launch_softmax_backward(DType dtype, const void* dy, const void* y, void* dx, int64_t A,
                             int64_t X, int64_t B, bool log) {
  if (A * X * B == 0) return;
  dispatch_floating(dtype, "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(dy);
    const T* out = static_cast<const T*>(y);
    T* d = static_cast<T*>(dx);
    if (B == 1) {
      softmax_backward_rows_kernel<T><<<row_grid(A), threads_for_row(X)>>>(g, out, d, A, X, log);
      VQ_CUDA_CHECK_LAUNCH("softmax_backward_rows_kernel");
    } else {
      softmax_backward_cols_kernel<T>
          <<<column_grid(A, B), dim3(32, kSlices)>>>(g, out, d, A, X, B, log);
      VQ_CUDA_CHECK_LAUNCH("softmax_backward_cols_kernel");
    }
  });
}

}  // namespace vq::cuda
