// Group and batch normalisation on contiguous [N, C, S] tensors (S = H*W), statistics in double.
// Size letters: N batch, C channels, G groups, Cg = C/G channels per group, S spatial,
// M elements sharing one mean.
//
// Both share one backward rule (see autograd/cpu/norm_cpu.cpp). With xhat = (x - mean) * rstd
// and g = dy * weight:
//   dx      = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   dweight = sum(dy * xhat),   dbias = sum(dy)       (per channel, overwritten)
// Group norm fills the GPU whatever the batch: its statistics are split over several blocks per
// group (partial sums in fixed places, added in a fixed order: deterministic), and the passes
// that write y or dx run over a 2-D grid (rows x positions) with the per-row scale and shift
// computed once, no division per element. With `silu` the forward writes silu(y) and the
// backward recomputes y where it needs silu'(y) (group_norm_silu: the normalised values are never
// stored). Batch norm runs one block per channel; both backward passes keep per-(n, c) or
// per-channel sums in a scratch buffer between kernels.
#include <cmath>

#include "autograd/elementwise_math.h"
#include "cuda/allocator.h"
#include "cuda/launch.cuh"

namespace vq::cuda {

namespace {

struct Add {
  __device__ double operator()(double a, double b) const { return a + b; }
};

unsigned blocks_for(int64_t tasks) {
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(tasks, 1), 1 << 16));
}

// ---- group norm ----

template <class T>
__device__ __forceinline__ T silu_of(T v) {
  return unary_forward(UnaryOp::Silu, v, {});
}
template <class T>
__device__ __forceinline__ T silu_derivative(T v) {
  return unary_derivative(UnaryOp::Silu, v, {});
}

// The statistics' blocks per group: about 2048 blocks in all (a large GPU full several times
// over), each with at least 4096 elements, so small groups stay one block.
int64_t parts_per_group(int64_t groups, int64_t M) {
  const int64_t wanted = std::max<int64_t>(1, 2048 / std::max<int64_t>(groups, 1));
  return std::max<int64_t>(1, std::min(wanted, M / 4096));
}

// Block (group t, part p) sums x and x^2 over its slice of the group's M contiguous elements
// into partial[(t * P + p) * 2 + {0, 1}].
template <class T>
__global__ void group_stats_partial_kernel(const T* x, int64_t M, int64_t P, double* partial) {
  const int64_t t = blockIdx.x, p = blockIdx.y;
  const int64_t slice = (M + P - 1) / P, begin = p * slice;
  const int64_t end = begin + slice < M ? begin + slice : M;
  const T* xg = x + t * M;  // the group's channels are contiguous
  double sum = 0, sumsq = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double v = xg[i];
    sum += v;
    sumsq += v * v;
  }
  sum = block_reduce(sum, Add{}, 0.0);
  sumsq = block_reduce(sumsq, Add{}, 0.0);
  if (threadIdx.x == 0) {
    partial[(t * P + p) * 2] = sum;
    partial[(t * P + p) * 2 + 1] = sumsq;
  }
}

// One thread per group: its P partial sums in order -> mean and rstd.
template <class T>
__global__ void group_stats_finalize_kernel(const double* partial, int64_t NG, int64_t P, int64_t M,
                                            double eps, T* mean, T* rstd) {
  VQ_GRID_LOOP(t, NG) {
    double sum = 0, sumsq = 0;
    for (int64_t p = 0; p < P; ++p) {
      sum += partial[(t * P + p) * 2];
      sumsq += partial[(t * P + p) * 2 + 1];
    }
    const double m = sum / static_cast<double>(M);
    const double var = fmax(0.0, sumsq / static_cast<double>(M) - m * m);
    mean[t] = static_cast<T>(m);
    rstd[t] = static_cast<T>(1.0 / sqrt(var + eps));
  }
}

// The affine map of row (n, c): y = x * scale + shift with scale = rstd w, shift = b - mean scale.
template <class T>
struct RowAffine {
  T scale, shift;
  __device__ RowAffine(int64_t row, int64_t C, int64_t Cg, int64_t G, const T* w, const T* b,
                       const T* mean, const T* rstd) {
    const int64_t ch = row % C, t = row / C * G + ch / Cg;
    scale = rstd[t] * (w ? w[ch] : T(1));
    shift = (b ? b[ch] : T(0)) - mean[t] * scale;
  }
  __device__ T operator()(T x) const { return x * scale + shift; }
};

// Rows (blockIdx.y) x positions (blockIdx.x), both grid-strided.
template <class T, bool kSilu>
__global__ void group_norm_apply_kernel(const T* x, const T* w, const T* b, const T* mean,
                                        const T* rstd, int64_t rows, int64_t C, int64_t Cg,
                                        int64_t G, int64_t S, T* y) {
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const RowAffine<T> affine(row, C, Cg, G, w, b, mean, rstd);
    for (int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; s < S;
         s += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const T v = affine(x[row * S + s]);
      y[row * S + s] = kSilu ? silu_of(v) : v;
    }
  }
}

dim3 rows_grid(int64_t rows, int64_t S, int threads) {
  const int64_t across = std::min<int64_t>((S + threads - 1) / threads, 1024);
  return dim3(static_cast<unsigned>(std::max<int64_t>(across, 1)),
              static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(rows, 1), 65535)));
}

// The gradient reaching the norm's output at one element: dy, or with silu dy * silu'(y).
template <class T, bool kSilu>
__device__ __forceinline__ T norm_grad(T dy, T x, const RowAffine<T>& affine) {
  return kSilu ? dy * silu_derivative(affine(x)) : dy;
}

// sums[t] = sum(g), sums[rows + t] = sum(g * x) over row t of S values, g = norm_grad.
template <class T, bool kSilu>
__global__ void row_sums_kernel(const T* dy, const T* x, const T* w, const T* b, const T* mean,
                                const T* rstd, int64_t rows, int64_t C, int64_t Cg, int64_t G,
                                int64_t S, double* sums) {
  for (int64_t t = blockIdx.x; t < rows; t += gridDim.x) {
    const RowAffine<T> affine(t, C, Cg, G, w, b, mean, rstd);
    double s_dy = 0, s_dyx = 0;
    for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
      const T xi = x[t * S + i];
      const double g = norm_grad<T, kSilu>(dy[t * S + i], xi, affine);
      s_dy += g;
      s_dyx += g * static_cast<double>(xi);
    }
    s_dy = block_reduce(s_dy, Add{}, 0.0);
    s_dyx = block_reduce(s_dyx, Add{}, 0.0);
    if (threadIdx.x == 0) {
      sums[t] = s_dy;
      sums[rows + t] = s_dyx;
    }
  }
}

// One thread per group (n, grp): dx = g (r w) + x a + c over the group, where with gw = g w
//   a = -r^2 mean(gw * xhat),  c = -r mean(gw) - m a
// from the per-channel sums; coef[t * 2 + {0, 1}] = a, c.
template <class T>
__global__ void group_norm_dx_coef_kernel(const T* w, const T* mean, const T* rstd,
                                          const double* sums, int64_t N, int64_t C, int64_t G,
                                          int64_t S, double* coef) {
  const int64_t Cg = C / G;
  const double M = static_cast<double>(Cg * S);
  const double* sum_dy = sums;
  const double* sum_dy_x = sums + N * C;
  VQ_GRID_LOOP(t, N * G) {
    const int64_t n = t / G, grp = t % G;
    double sum_g = 0, sum_gx = 0;
    for (int64_t c = 0; c < Cg; ++c) {
      const int64_t ch = grp * Cg + c;
      const double wc = w ? static_cast<double>(w[ch]) : 1.0;
      sum_g += wc * sum_dy[n * C + ch];
      sum_gx += wc * sum_dy_x[n * C + ch];
    }
    const double m = mean[t], r = rstd[t];
    const double mean_g = sum_g / M;
    const double mean_g_xhat = r * (sum_gx - m * sum_g) / M;  // sum(gw * xhat) / M
    const double a = -r * r * mean_g_xhat;
    coef[t * 2] = a;
    coef[t * 2 + 1] = -r * mean_g - m * a;
  }
}

template <class T, bool kSilu>
__global__ void group_norm_dx_kernel(const T* dy, const T* x, const T* w, const T* b, const T* mean,
                                     const T* rstd, const double* coef, int64_t rows, int64_t C,
                                     int64_t Cg, int64_t G, int64_t S, T* dx) {
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t ch = row % C, t = row / C * G + ch / Cg;
    const RowAffine<T> affine(row, C, Cg, G, w, b, mean, rstd);
    const T rw = rstd[t] * (w ? w[ch] : T(1));
    const T a = static_cast<T>(coef[t * 2]), c = static_cast<T>(coef[t * 2 + 1]);
    for (int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; s < S;
         s += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const T xi = x[row * S + s];
      dx[row * S + s] = norm_grad<T, kSilu>(dy[row * S + s], xi, affine) * rw + xi * a + c;
    }
  }
}

// dweight[c] = sum_n r (sum(dy x) - m sum(dy)),  dbias[c] = sum_n sum(dy)
template <class T>
__global__ void group_norm_dparams_kernel(const T* mean, const T* rstd, const double* sums,
                                          int64_t N, int64_t C, int64_t G, T* dweight, T* dbias) {
  const int64_t Cg = C / G;
  VQ_GRID_LOOP(c, C) {
    double dw = 0, db = 0;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t t = n * G + c / Cg;
      const double s_dy = sums[n * C + c], s_dyx = sums[N * C + n * C + c];
      dw += static_cast<double>(rstd[t]) * (s_dyx - static_cast<double>(mean[t]) * s_dy);
      db += s_dy;
    }
    if (dweight) dweight[c] = static_cast<T>(dw);
    if (dbias) dbias[c] = static_cast<T>(db);
  }
}

// ---- batch norm ----

template <class T>
__global__ void batch_norm_stats_kernel(const T* x, int64_t N, int64_t C, int64_t S, T* mean,
                                        T* var) {
  const int64_t M = N * S;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    double sum = 0, sumsq = 0;
    for (int64_t e = threadIdx.x; e < M; e += blockDim.x) {
      const double v = x[((e / S) * C + c) * S + e % S];
      sum += v;
      sumsq += v * v;
    }
    sum = block_reduce(sum, Add{}, 0.0);
    sumsq = block_reduce(sumsq, Add{}, 0.0);
    if (threadIdx.x == 0) {
      const double m = sum / static_cast<double>(M);
      mean[c] = static_cast<T>(m);
      var[c] = static_cast<T>(fmax(0.0, sumsq / static_cast<double>(M) - m * m));
    }
  }
}

template <class T>
__global__ void batch_norm_apply_kernel(const T* x, const T* mean, const T* invstd, const T* w,
                                        const T* b, int64_t C, int64_t S, int64_t total, T* y) {
  VQ_GRID_LOOP(e, total) {
    const int64_t c = (e / S) % C;
    const T scale = invstd[c] * (w ? w[c] : T(1));
    const T shift = (b ? b[c] : T(0)) - mean[c] * scale;
    y[e] = x[e] * scale + shift;
  }
}

// sums[c] = sum(dy), sums[C + c] = sum(dy * xhat); writes dweight/dbias.
template <class T>
__global__ void batch_norm_sums_kernel(const T* dy, const T* x, const T* mean, const T* invstd,
                                       int64_t N, int64_t C, int64_t S, double* sums, T* dweight,
                                       T* dbias) {
  const int64_t M = N * S;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    const double m = mean[c], r = invstd[c];
    double s_dy = 0, s_dy_xhat = 0;
    for (int64_t e = threadIdx.x; e < M; e += blockDim.x) {
      const int64_t at = ((e / S) * C + c) * S + e % S;
      const double g = dy[at];
      s_dy += g;
      s_dy_xhat += g * (static_cast<double>(x[at]) - m) * r;
    }
    s_dy = block_reduce(s_dy, Add{}, 0.0);
    s_dy_xhat = block_reduce(s_dy_xhat, Add{}, 0.0);
    if (threadIdx.x == 0) {
      sums[c] = s_dy;
      sums[C + c] = s_dy_xhat;
      if (dweight) dweight[c] = static_cast<T>(s_dy_xhat);
      if (dbias) dbias[c] = static_cast<T>(s_dy);
    }
  }
}

// training: dx = r w (dy - mean(dy) - xhat mean(dy xhat)); eval: dx = r w dy
template <class T>
__global__ void batch_norm_dx_kernel(const T* dy, const T* x, const T* mean, const T* invstd,
                                     const T* w, const double* sums, bool training, int64_t N,
                                     int64_t C, int64_t S, T* dx) {
  const double M = static_cast<double>(N * S);
  VQ_GRID_LOOP(e, N * C * S) {
    const int64_t c = (e / S) % C;
    const double m = mean[c], r = invstd[c];
    const double wc = w ? static_cast<double>(w[c]) : 1.0;
    const double mean_dy = training ? sums[c] / M : 0.0;
    const double mean_dy_xhat = training ? sums[C + c] / M : 0.0;
    const double xhat = (static_cast<double>(x[e]) - m) * r;
    dx[e] = static_cast<T>(r * wc * (static_cast<double>(dy[e]) - mean_dy - xhat * mean_dy_xhat));
  }
}

// mean and rstd [N, G] of x [N, C, S].
template <class T>
void group_stats(const T* x, int64_t N, int64_t C, int64_t S, int64_t G, double eps, T* mean,
                 T* rstd) {
  const int64_t NG = N * G, M = C / G * S, P = parts_per_group(NG, M);
  DeviceBuffer partial(2 * NG * P * sizeof(double));
  group_stats_partial_kernel<T>
      <<<dim3(static_cast<unsigned>(NG), static_cast<unsigned>(P)), threads_for_row(M / P)>>>(
          x, M, P, partial.as<double>());
  VQ_CUDA_CHECK_LAUNCH("group_stats_partial_kernel");
  launch_1d("group_stats_finalize_kernel", NG, group_stats_finalize_kernel<T>, partial.as<double>(),
            NG, P, M, eps, mean, rstd);
}

// scale[row], shift[row] of RowAffine for every row (n, c).
template <class T>
__global__ void row_affine_kernel(const T* w, const T* b, const T* mean, const T* rstd,
                                  int64_t rows, int64_t C, int64_t Cg, int64_t G, T* scale,
                                  T* shift) {
  VQ_GRID_LOOP(row, rows) {
    const RowAffine<T> affine(row, C, Cg, G, w, b, mean, rstd);
    scale[row] = affine.scale;
    shift[row] = affine.shift;
  }
}

}  // namespace

void launch_group_norm(DType dtype, const void* x, const void* w, const void* b, int64_t N,
                       int64_t C, int64_t S, int64_t G, double eps, bool silu, void* y, void* mean,
                       void* rstd) {
  if (N * G == 0) return;
  dispatch_floating(dtype, "group_norm", [&](auto tag) {
    using T = decltype(tag);
    group_stats(static_cast<const T*>(x), N, C, S, G, eps, static_cast<T*>(mean),
                static_cast<T*>(rstd));
    const int threads = threads_for_row(S);
    auto apply = silu ? group_norm_apply_kernel<T, true> : group_norm_apply_kernel<T, false>;
    apply<<<rows_grid(N * C, S, threads), threads>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b),
        static_cast<const T*>(mean), static_cast<const T*>(rstd), N * C, C, C / G, G, S,
        static_cast<T*>(y));
    VQ_CUDA_CHECK_LAUNCH("group_norm_apply_kernel");
  });
}

bool launch_group_norm_channels_last(const float* x, const float* w, const float* b, int64_t N,
                                     int64_t C, int64_t S, int64_t G, double eps, bool silu,
                                     void* y, DType y_dtype, float* mean, float* rstd) {
  if (!channels_last_transpose_fits(N, C, S)) return false;
  if (N * G == 0) return true;
  group_stats(x, N, C, S, G, eps, mean, rstd);
  DeviceBuffer affine(2 * N * C * sizeof(float));
  float* scale = affine.as<float>();
  float* shift = scale + N * C;
  launch_1d("row_affine_kernel", N * C, row_affine_kernel<float>, w, b, mean, rstd, N * C, C, C / G,
            G, scale, shift);
  return launch_affine_to_channels_last(y, y_dtype, x, scale, shift, silu, N, C, S);
}

void launch_group_norm_backward(DType dtype, const void* dy, const void* x, const void* w,
                                const void* b, const void* mean, const void* rstd, int64_t N,
                                int64_t C, int64_t S, int64_t G, bool silu, void* dx, void* dweight,
                                void* dbias) {
  if (N * C == 0) return;
  dispatch_floating(dtype, "group_norm backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(dy);
    const T* in = static_cast<const T*>(x);
    const T* wt = static_cast<const T*>(w);
    const T* bs = static_cast<const T*>(b);
    const T* mu = static_cast<const T*>(mean);
    const T* rs = static_cast<const T*>(rstd);
    const int64_t Cg = C / G;
    DeviceBuffer sums(2 * N * C * sizeof(double));
    auto row_sums = silu ? row_sums_kernel<T, true> : row_sums_kernel<T, false>;
    row_sums<<<blocks_for(N * C), threads_for_row(S)>>>(g, in, wt, bs, mu, rs, N * C, C, Cg, G, S,
                                                        sums.as<double>());
    VQ_CUDA_CHECK_LAUNCH("row_sums_kernel");
    if (dx) {
      DeviceBuffer coef(2 * N * G * sizeof(double));
      launch_1d("group_norm_dx_coef_kernel", N * G, group_norm_dx_coef_kernel<T>, wt, mu, rs,
                sums.as<double>(), N, C, G, S, coef.as<double>());
      const int threads = threads_for_row(S);
      auto dx_kernel = silu ? group_norm_dx_kernel<T, true> : group_norm_dx_kernel<T, false>;
      dx_kernel<<<rows_grid(N * C, S, threads), threads>>>(g, in, wt, bs, mu, rs, coef.as<double>(),
                                                           N * C, C, Cg, G, S, static_cast<T*>(dx));
      VQ_CUDA_CHECK_LAUNCH("group_norm_dx_kernel");
    }
    if (dweight || dbias) {
      launch_1d("group_norm_dparams_kernel", C, group_norm_dparams_kernel<T>, mu, rs,
                sums.as<double>(), N, C, G, static_cast<T*>(dweight), static_cast<T*>(dbias));
    }
  });
}

void launch_batch_norm_stats(DType dtype, const void* x, int64_t N, int64_t C, int64_t S,
                             void* mean, void* var) {
  if (C == 0) return;
  dispatch_floating(dtype, "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    batch_norm_stats_kernel<T><<<blocks_for(C), threads_for_row(N * S)>>>(
        static_cast<const T*>(x), N, C, S, static_cast<T*>(mean), static_cast<T*>(var));
    VQ_CUDA_CHECK_LAUNCH("batch_norm_stats_kernel");
  });
}

void launch_batch_norm_apply(DType dtype, const void* x, const void* mean, const void* invstd,
                             const void* w, const void* b, int64_t N, int64_t C, int64_t S,
                             void* y) {
  dispatch_floating(dtype, "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("batch_norm_apply_kernel", N * C * S, batch_norm_apply_kernel<T>,
              static_cast<const T*>(x), static_cast<const T*>(mean), static_cast<const T*>(invstd),
              static_cast<const T*>(w), static_cast<const T*>(b), C, S, N * C * S,
              static_cast<T*>(y));
  });
}

void launch_batch_norm_backward(DType dtype, const void* dy, const void* x, const void* mean,
                                const void* invstd, const void* w, bool training, int64_t N,
                                int64_t C, int64_t S, void* dx, void* dweight, void* dbias) {
  if (C == 0) return;
  dispatch_floating(dtype, "batch_norm backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(dy);
    const T* in = static_cast<const T*>(x);
    const T* mu = static_cast<const T*>(mean);
    const T* rs = static_cast<const T*>(invstd);
    DeviceBuffer sums(2 * C * sizeof(double));
    batch_norm_sums_kernel<T><<<blocks_for(C), threads_for_row(N * S)>>>(
        g, in, mu, rs, N, C, S, sums.as<double>(), static_cast<T*>(dweight),
        static_cast<T*>(dbias));
    VQ_CUDA_CHECK_LAUNCH("batch_norm_sums_kernel");
    if (dx) {
      launch_1d("batch_norm_dx_kernel", N * C * S, batch_norm_dx_kernel<T>, g, in, mu, rs,
                static_cast<const T*>(w), sums.as<double>(), training, N, C, S,
                static_cast<T*>(dx));
    }
  });
}

}  // namespace vq::cuda
