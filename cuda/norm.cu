// Group and batch normalisation on contiguous [N, C, S] tensors (S = H*W), statistics in double.
// Size letters: N batch, C channels, G groups, Cg = C/G channels per group, S spatial,
// M elements sharing one mean.
//
// Both share one backward rule (see autograd/cpu/norm_cpu.cpp). With xhat = (x - mean) * rstd
// and g = dy * weight:
//   dx      = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   dweight = sum(dy * xhat),   dbias = sum(dy)       (per channel, overwritten)
// Reductions run one block per group (group norm) or per channel (batch norm); the backward
// passes keep per-(n, c) or per-channel sums in a scratch buffer between kernels.
#include <cmath>

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
__global__ void group_norm_kernel(const T* x, const T* w, const T* b, int64_t C, int64_t S,
                                  int64_t G, int64_t NG, double eps, T* y, T* mean, T* rstd) {
  const int64_t Cg = C / G, M = Cg * S;
  for (int64_t t = blockIdx.x; t < NG; t += gridDim.x) {
    const int64_t n = t / G, g = t % G;
    const T* xg = x + (n * C + g * Cg) * S;  // the group's channels are contiguous
    double sum = 0, sumsq = 0;
    for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
      const double v = xg[i];
      sum += v;
      sumsq += v * v;
    }
    sum = block_reduce(sum, Add{}, 0.0);
    sumsq = block_reduce(sumsq, Add{}, 0.0);
    const double m = sum / static_cast<double>(M);
    const double var = fmax(0.0, sumsq / static_cast<double>(M) - m * m);
    const T r = static_cast<T>(1.0 / sqrt(var + eps));
    if (threadIdx.x == 0) {
      mean[t] = static_cast<T>(m);
      rstd[t] = r;
    }
    T* yg = y + (n * C + g * Cg) * S;
    for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
      const int64_t ch = g * Cg + i / S;
      // y = x * scale + shift, with scale = rstd * w and shift = b - mean * scale
      const T scale = r * (w ? w[ch] : T(1));
      const T shift = (b ? b[ch] : T(0)) - static_cast<T>(m) * scale;
      yg[i] = xg[i] * scale + shift;
    }
  }
}

// sums[t] = sum(dy), sums[rows + t] = sum(dy * x) over row t of S values.
template <class T>
__global__ void row_sums_kernel(const T* dy, const T* x, int64_t rows, int64_t S, double* sums) {
  for (int64_t t = blockIdx.x; t < rows; t += gridDim.x) {
    double s_dy = 0, s_dyx = 0;
    for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
      const double g = dy[t * S + i];
      s_dy += g;
      s_dyx += g * static_cast<double>(x[t * S + i]);
    }
    s_dy = block_reduce(s_dy, Add{}, 0.0);
    s_dyx = block_reduce(s_dyx, Add{}, 0.0);
    if (threadIdx.x == 0) {
      sums[t] = s_dy;
      sums[rows + t] = s_dyx;
    }
  }
}

template <class T>
__global__ void group_norm_dx_kernel(const T* dy, const T* x, const T* w, const T* mean,
                                     const T* rstd, const double* sums, int64_t N, int64_t C,
                                     int64_t S, int64_t G, T* dx) {
  const int64_t Cg = C / G, NG = N * G;
  const double M = static_cast<double>(Cg * S);
  const double* sum_dy = sums;
  const double* sum_dy_x = sums + N * C;
  for (int64_t t = blockIdx.x; t < NG; t += gridDim.x) {
    const int64_t n = t / G, grp = t % G;
    // With gw = dy * w: sum(gw) and sum(gw * x), from the per-channel sums.
    double sum_g = 0, sum_gx = 0;
    for (int64_t c = threadIdx.x; c < Cg; c += blockDim.x) {
      const int64_t ch = grp * Cg + c;
      const double wc = w ? static_cast<double>(w[ch]) : 1.0;
      sum_g += wc * sum_dy[n * C + ch];
      sum_gx += wc * sum_dy_x[n * C + ch];
    }
    sum_g = block_reduce(sum_g, Add{}, 0.0);
    sum_gx = block_reduce(sum_gx, Add{}, 0.0);
    const double m = mean[t], r = rstd[t];
    const double mean_g = sum_g / M;
    const double mean_g_xhat = r * (sum_gx - m * sum_g) / M;  // sum(gw * xhat) / M
    // dx = r (gw - mean_g - xhat mean_g_xhat) = dy (r w) + x a + b, with
    // a = -r^2 mean_g_xhat and b = -r mean_g - m a
    const T a = static_cast<T>(-r * r * mean_g_xhat);
    const T b = static_cast<T>(-r * mean_g - m * (-r * r * mean_g_xhat));
    const int64_t base = (n * C + grp * Cg) * S;
    for (int64_t i = threadIdx.x; i < Cg * S; i += blockDim.x) {
      const int64_t ch = grp * Cg + i / S;
      const T rw = static_cast<T>(r) * (w ? w[ch] : T(1));
      dx[base + i] = dy[base + i] * rw + x[base + i] * a + b;
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

}  // namespace

void launch_group_norm(DType dtype, const void* x, const void* w, const void* b, int64_t N,
                       int64_t C, int64_t S, int64_t G, double eps, void* y, void* mean,
                       void* rstd) {
  if (N * G == 0) return;
  dispatch_floating(dtype, "group_norm", [&](auto tag) {
    using T = decltype(tag);
    group_norm_kernel<T><<<blocks_for(N * G), threads_for_row(C / G * S)>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), C, S, G,
        N * G, eps, static_cast<T*>(y), static_cast<T*>(mean), static_cast<T*>(rstd));
    VQ_CUDA_CHECK_LAUNCH("group_norm_kernel");
  });
}

void launch_group_norm_backward(DType dtype, const void* dy, const void* x, const void* w,
                                const void* mean, const void* rstd, int64_t N, int64_t C, int64_t S,
                                int64_t G, void* dx, void* dweight, void* dbias) {
  if (N * C == 0) return;
  dispatch_floating(dtype, "group_norm backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(dy);
    const T* in = static_cast<const T*>(x);
    const T* wt = static_cast<const T*>(w);
    const T* mu = static_cast<const T*>(mean);
    const T* rs = static_cast<const T*>(rstd);
    DeviceBuffer sums(2 * N * C * sizeof(double));
    row_sums_kernel<T>
        <<<blocks_for(N * C), threads_for_row(S)>>>(g, in, N * C, S, sums.as<double>());
    VQ_CUDA_CHECK_LAUNCH("row_sums_kernel");
    if (dx) {
      group_norm_dx_kernel<T><<<blocks_for(N * G), threads_for_row(C / G * S)>>>(
          g, in, wt, mu, rs, sums.as<double>(), N, C, S, G, static_cast<T*>(dx));
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
