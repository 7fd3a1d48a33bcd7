// Group and batch normalisation on contiguous [N, C, S] tensors (S = H*W).
// Size letters: N batch, C channels, G groups, Cg = C/G channels per group, S spatial.
//
// Both share one backward rule. With xhat = (x - mean) * rstd and g = dy * weight, averaged over
// the M elements that share a mean:
//   dx      = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   dweight = sum(dy * xhat),   dbias = sum(dy)       (per channel)
// Statistics accumulate per channel row in T (a vectorisable loop) and across rows in double.
#include <cmath>
#include <vector>

#include "autograd/cpu/cpu_backend.h"
#include "autograd/cpu/loops.h"
#include "autograd/elementwise_math.h"

namespace vq::cpu {

namespace {

template <class T>
T silu_of(T v) {
  return unary_forward(UnaryOp::Silu, v, {});
}
template <class T>
T silu_derivative(T v) {
  return unary_derivative(UnaryOp::Silu, v, {});
}

// sum(a) and sum(a * b) over one row of S values.
template <class T>
void row_sums(const T* a, const T* b, int64_t S, double& sum_a, double& sum_ab) {
  sum_a = lane_sum<T>(S, [a](int64_t s) { return a[s]; });
  sum_ab = lane_sum<T>(S, [a, b](int64_t s) { return a[s] * b[s]; });
}

}  // namespace

void CpuBackend::group_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t G,
                            double eps, bool silu, const Tensor& y, const Tensor& mean,
                            const Tensor& rstd) {
  const int64_t N = x.size(0), C = x.size(1), S = x.size(2), Cg = C / G;
  dispatch_floating(x.dtype(), "group_norm", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    const T* b = bias.defined() ? bias.data<T>() : nullptr;
    T* out = y.data<T>();
    T* mu = mean.data<T>();
    T* rs = rstd.data<T>();
    parallel_for(N * G, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = t / G, g = t % G;
        const T* xg = in + (n * C + g * Cg) * S;
        double sum = 0, sumsq = 0;
        for (int64_t c = 0; c < Cg; ++c) {
          double row_sum, row_sumsq;
          row_sums(xg + c * S, xg + c * S, S, row_sum, row_sumsq);
          sum += row_sum;
          sumsq += row_sumsq;
        }
        const double m = sum / (Cg * S);
        const double var = std::max(0.0, sumsq / (Cg * S) - m * m);
        const T r = static_cast<T>(1.0 / std::sqrt(var + eps));
        mu[t] = static_cast<T>(m);
        rs[t] = r;
        for (int64_t c = 0; c < Cg; ++c) {
          const int64_t ch = g * Cg + c;
          // y = x * scale + shift, with scale = rstd * w and shift = b - mean * scale
          const T scale = r * (w ? w[ch] : T(1));
          const T shift = (b ? b[ch] : T(0)) - static_cast<T>(m) * scale;
          const T* xc = xg + c * S;
          T* yc = out + (n * C + ch) * S;
          if (silu) {
            for (int64_t s = 0; s < S; ++s) yc[s] = silu_of(xc[s] * scale + shift);
          } else {
            for (int64_t s = 0; s < S; ++s) yc[s] = xc[s] * scale + shift;
          }
        }
      }
    });
  });
}

void CpuBackend::group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                     const Tensor& bias, const Tensor& mean, const Tensor& rstd,
                                     int64_t G, bool silu, const Tensor& dx, const Tensor& dweight,
                                     const Tensor& dbias) {
  const int64_t N = x.size(0), C = x.size(1), S = x.size(2), Cg = C / G;
  dispatch_floating(x.dtype(), "group_norm backward", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    const T* mu = mean.data<T>();
    const T* rs = rstd.data<T>();
    // With silu the incoming gradient is the activation's: through silu'(v) at the recomputed
    // normalised value v it becomes the norm's (what the rest of this function takes as dy).
    std::vector<T> through_silu(silu ? N * C * S : 0);
    if (silu) {
      const T* dz = dy.data<T>();
      const T* b = bias.defined() ? bias.data<T>() : nullptr;
      parallel_for(N * C, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t ch = t % C, grp = t / C * G + ch / Cg;
          const T scale = rs[grp] * (w ? w[ch] : T(1));
          const T shift = (b ? b[ch] : T(0)) - mu[grp] * scale;
          for (int64_t s = 0; s < S; ++s) {
            through_silu[t * S + s] =
                dz[t * S + s] * silu_derivative(in[t * S + s] * scale + shift);
          }
        }
      });
    }
    const T* g = silu ? through_silu.data() : dy.data<T>();
    // Per (n, c): sum(dy) and sum(dy * x), reused for dx and for dweight/dbias.
    std::vector<double> sum_dy(N * C), sum_dy_x(N * C);
    parallel_for(N * C, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        row_sums(g + t * S, in + t * S, S, sum_dy[t], sum_dy_x[t]);
      }
    });
    if (dx.defined()) {
      T* d = dx.data<T>();
      parallel_for(N * G, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t n = t / G, grp = t % G;
          const double m = mu[t], r = rs[t], M = static_cast<double>(Cg * S);
          // With gw = dy * w: sum(gw) and sum(gw * xhat) = r * (sum(gw * x) - m * sum(gw)).
          double sum_g = 0, sum_gx = 0;
          for (int64_t c = 0; c < Cg; ++c) {
            const int64_t ch = grp * Cg + c;
            const double wc = w ? w[ch] : 1.0;
            sum_g += wc * sum_dy[n * C + ch];
            sum_gx += wc * sum_dy_x[n * C + ch];
          }
          const double mean_g = sum_g / M;
          const double mean_g_xhat = r * (sum_gx - m * sum_g) / M;
          for (int64_t c = 0; c < Cg; ++c) {
            const int64_t ch = grp * Cg + c;
            const T wc = w ? w[ch] : T(1);
            // dx = r * (dy * w - mean_g - xhat * mean_g_xhat), xhat = (x - m) * r, expanded as
            // dx = dy * (r w) + x * a + b with a = -r^2 mean_g_xhat, b = -r mean_g - m a
            const T a = static_cast<T>(-r * r * mean_g_xhat);
            const T b = static_cast<T>(-r * mean_g - m * (-r * r * mean_g_xhat));
            const T rw = static_cast<T>(r) * wc;
            const T* gc = g + (n * C + ch) * S;
            const T* xc = in + (n * C + ch) * S;
            T* dc = d + (n * C + ch) * S;
            for (int64_t s = 0; s < S; ++s) dc[s] = gc[s] * rw + xc[s] * a + b;
          }
        }
      });
    }
    if (dweight.defined() || dbias.defined()) {
      // dweight[c] = sum_n r (sum(dy x) - m sum(dy)),  dbias[c] = sum_n sum(dy)
      for (int64_t c = 0; c < C; ++c) {
        double dw = 0, db = 0;
        for (int64_t n = 0; n < N; ++n) {
          const int64_t t = n * G + c / Cg;
          dw += static_cast<double>(rs[t]) * (sum_dy_x[n * C + c] - mu[t] * sum_dy[n * C + c]);
          db += sum_dy[n * C + c];
        }
        if (dweight.defined()) dweight.data<T>()[c] = static_cast<T>(dw);
        if (dbias.defined()) dbias.data<T>()[c] = static_cast<T>(db);
      }
    }
  });
}

void CpuBackend::batch_norm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) {
  const int64_t N = x.size(0), C = x.size(1), S = x.size(2);
  dispatch_floating(x.dtype(), "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    parallel_for(C, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double sum = 0, sumsq = 0;
        for (int64_t n = 0; n < N; ++n) {
          const T* xc = in + (n * C + c) * S;
          for (int64_t s = 0; s < S; ++s) {
            sum += xc[s];
            sumsq += static_cast<double>(xc[s]) * xc[s];
          }
        }
        const double m = sum / (N * S);
        mean.data<T>()[c] = static_cast<T>(m);
        var.data<T>()[c] = static_cast<T>(std::max(0.0, sumsq / (N * S) - m * m));
      }
    });
  });
}

void CpuBackend::batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                  const Tensor& weight, const Tensor& bias, const Tensor& y) {
  const int64_t N = x.size(0), C = x.size(1), S = x.size(2);
  dispatch_floating(x.dtype(), "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    T* out = y.data<T>();
    parallel_for(N * C, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t c = t % C;
        const T scale = invstd.data<T>()[c] * (weight.defined() ? weight.data<T>()[c] : T(1));
        const T shift = (bias.defined() ? bias.data<T>()[c] : T(0)) - mean.data<T>()[c] * scale;
        for (int64_t s = 0; s < S; ++s) out[t * S + s] = in[t * S + s] * scale + shift;
      }
    });
  });
}

void CpuBackend::batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& mean,
                                     const Tensor& invstd, const Tensor& weight, bool training,
                                     const Tensor& dx, const Tensor& dweight, const Tensor& dbias) {
  const int64_t N = x.size(0), C = x.size(1), S = x.size(2);
  dispatch_floating(x.dtype(), "batch_norm backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = dy.data<T>();
    const T* in = x.data<T>();
    parallel_for(C, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const double m = mean.data<T>()[c], r = invstd.data<T>()[c];
        const double wc = weight.defined() ? weight.data<T>()[c] : 1.0;
        double sum_dy = 0, sum_dy_xhat = 0;
        for (int64_t n = 0; n < N; ++n) {
          const T* gc = g + (n * C + c) * S;
          const T* xc = in + (n * C + c) * S;
          for (int64_t s = 0; s < S; ++s) {
            sum_dy += gc[s];
            sum_dy_xhat += gc[s] * (xc[s] - m) * r;
          }
        }
        if (dweight.defined()) dweight.data<T>()[c] = static_cast<T>(sum_dy_xhat);
        if (dbias.defined()) dbias.data<T>()[c] = static_cast<T>(sum_dy);
        if (!dx.defined()) continue;
        const double M = static_cast<double>(N * S);
        // training: dx = r w (dy - mean(dy) - xhat mean(dy xhat)); eval: dx = r w dy
        const double mean_dy = training ? sum_dy / M : 0.0;
        const double mean_dy_xhat = training ? sum_dy_xhat / M : 0.0;
        for (int64_t n = 0; n < N; ++n) {
          const T* gc = g + (n * C + c) * S;
          const T* xc = in + (n * C + c) * S;
          T* dc = dx.data<T>() + (n * C + c) * S;
          for (int64_t s = 0; s < S; ++s) {
            const double xhat = (xc[s] - m) * r;
            dc[s] = static_cast<T>(r * wc * (gc[s] - mean_dy - xhat * mean_dy_xhat));
          }
        }
      }
    });
  });
}

}  // namespace vq::cpu
