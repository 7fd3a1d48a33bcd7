// Nearest upsampling and 2-D pooling on contiguous NCHW tensors, one thread per output element
// (forward) or per input element (backward, gathering what reached it, so no atomics and the
// CPU's summation order). max_pool2d's backward is the exception: the interface passes only the
// argmax indices, not k and stride, so it scatters with atomicAdd; windows that do not overlap
// (stride >= k, the usual case) give every input at most one contribution, which is exact.
// Size letters: P = N*C planes, H W input, OH OW output, k kernel, s stride, p padding.
#include <cmath>

#include "cuda/launch.cuh"

namespace vq::cuda {

namespace {

template <class T>
__global__ void upsample_kernel(const T* x, T* y, Planes d, int64_t scale) {
  VQ_GRID_LOOP(o, d.P * d.OH * d.OW) {
    const int64_t ow = o % d.OW, oh = (o / d.OW) % d.OH, p = o / (d.OW * d.OH);
    y[o] = x[(p * d.H + oh / scale) * d.W + ow / scale];
  }
}

// dx[h, w] = sum of the scale x scale block of dy it was copied to.
template <class T>
__global__ void upsample_backward_kernel(const T* dy, T* dx, Planes d, int64_t scale) {
  VQ_GRID_LOOP(e, d.P * d.H * d.W) {
    const int64_t w = e % d.W, h = (e / d.W) % d.H, p = e / (d.W * d.H);
    T acc = T(0);
    for (int64_t i = 0; i < scale; ++i) {
      const T* row = dy + (p * d.OH + h * scale + i) * d.OW + w * scale;
      for (int64_t j = 0; j < scale; ++j) acc += row[j];
    }
    dx[e] = acc;
  }
}

// A window's divisor, as the CPU computes it: k*k with count_pad, else its positions inside the
// image.
template <class T>
__device__ __forceinline__ T window_divisor(int64_t oh, int64_t ow, int64_t k, int64_t s,
                                            int64_t pad, bool count_pad, const Planes& d) {
  if (count_pad) return static_cast<T>(k * k);
  const int64_t h0 = oh * s - pad, w0 = ow * s - pad;
  const int64_t rows = (h0 + k < d.H ? h0 + k : d.H) - (h0 > 0 ? h0 : 0);
  const int64_t cols = (w0 + k < d.W ? w0 + k : d.W) - (w0 > 0 ? w0 : 0);
  return static_cast<T>(rows * cols);
}

template <class T>
__global__ void avg_pool_kernel(const T* x, T* y, Planes d, int64_t k, int64_t s, int64_t pad,
                                bool count_pad) {
  VQ_GRID_LOOP(o, d.P * d.OH * d.OW) {
    const int64_t ow = o % d.OW, oh = (o / d.OW) % d.OH, p = o / (d.OW * d.OH);
    const T* plane = x + p * d.H * d.W;
    T acc = T(0);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t h = oh * s - pad + i;
      if (h < 0 || h >= d.H) continue;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t w = ow * s - pad + j;
        if (w >= 0 && w < d.W) acc += plane[h * d.W + w];
      }
    }
    y[o] = acc * (T(1) / window_divisor<T>(oh, ow, k, s, pad, count_pad, d));
  }
}

// Output rows whose window [o*s - pad, o*s - pad + k) covers input row h: o in [first, last].
__device__ __forceinline__ void covering(int64_t h, int64_t k, int64_t s, int64_t pad, int64_t out,
                                         int64_t& first, int64_t& last) {
  const int64_t top = h + pad - k + 1;  // the window must start at or after this
  first = top <= 0 ? 0 : (top + s - 1) / s;
  last = (h + pad) / s;
  if (last > out - 1) last = out - 1;
}

template <class T>
__global__ void avg_pool_backward_kernel(const T* dy, T* dx, Planes d, int64_t k, int64_t s,
                                         int64_t pad, bool count_pad) {
  VQ_GRID_LOOP(e, d.P * d.H * d.W) {
    const int64_t w = e % d.W, h = (e / d.W) % d.H, p = e / (d.W * d.H);
    int64_t oh0, oh1, ow0, ow1;
    covering(h, k, s, pad, d.OH, oh0, oh1);
    covering(w, k, s, pad, d.OW, ow0, ow1);
    const T* g = dy + p * d.OH * d.OW;
    T acc = T(0);
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const T inv = T(1) / window_divisor<T>(oh, ow, k, s, pad, count_pad, d);
        acc += mul_rn(g[oh * d.OW + ow], inv);
      }
    }
    dx[e] = acc;
  }
}

// NOTE: ties keep the first position in row-major window order; NaN never wins (as on the CPU).
// Padded positions are skipped (-inf): the first position inside the image starts the search.
template <class T>
__global__ void max_pool_kernel(const T* x, T* y, int64_t* indices, Planes d, int64_t k, int64_t s,
                                int64_t pad) {
  VQ_GRID_LOOP(o, d.P * d.OH * d.OW) {
    const int64_t ow = o % d.OW, oh = (o / d.OW) % d.OH, p = o / (d.OW * d.OH);
    const T* plane = x + p * d.H * d.W;
    const int64_t h0 = oh * s - pad, w0 = ow * s - pad;
    const int64_t h_lo = h0 > 0 ? h0 : 0, h_hi = h0 + k < d.H ? h0 + k : d.H;
    const int64_t w_lo = w0 > 0 ? w0 : 0, w_hi = w0 + k < d.W ? w0 + k : d.W;
    T best = -static_cast<T>(INFINITY);
    int64_t best_i = h_lo * d.W + w_lo;
    for (int64_t h = h_lo; h < h_hi; ++h) {
      for (int64_t w = w_lo; w < w_hi; ++w) {
        const int64_t pos = h * d.W + w;
        if (plane[pos] > best) {
          best = plane[pos];
          best_i = pos;
        }
      }
    }
    y[o] = best;
    indices[o] = best_i;
  }
}

template <class T>
__global__ void max_pool_backward_kernel(const T* dy, const int64_t* indices, T* dx, Planes d) {
  VQ_GRID_LOOP(o, d.P * d.OH * d.OW) {
    const int64_t p = o / (d.OH * d.OW);
    atomicAdd(dx + p * d.H * d.W + indices[o], dy[o]);
  }
}

// Overlapping windows under set_deterministic: each input element sums, in output order, the
// gradients of the windows that contain it and chose it (no atomics).
template <class T>
__global__ void max_pool_backward_ordered_kernel(const T* dy, const int64_t* indices, T* dx,
                                                 Planes d, int64_t k, int64_t s, int64_t pad) {
  VQ_GRID_LOOP(e, d.P * d.H * d.W) {
    const int64_t p = e / (d.H * d.W), hw = e % (d.H * d.W), h = hw / d.W, w = hw % d.W;
    int64_t oh0, oh1, ow0, ow1;
    covering(h, k, s, pad, d.OH, oh0, oh1);
    covering(w, k, s, pad, d.OW, ow0, ow1);
    T acc = 0;
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t o = (p * d.OH + oh) * d.OW + ow;
        if (indices[o] == hw) acc += dy[o];
      }
    }
    dx[e] = acc;
  }
}

}  // namespace

void launch_upsample_nearest2d(DType dtype, const void* x, void* y, Planes d, int64_t scale) {
  dispatch_floating(dtype, "upsample_nearest2d", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("upsample_kernel", d.P * d.OH * d.OW, upsample_kernel<T>, static_cast<const T*>(x),
              static_cast<T*>(y), d, scale);
  });
}

void launch_upsample_nearest2d_backward(DType dtype, const void* dy, void* dx, Planes d,
                                        int64_t scale) {
  dispatch_floating(dtype, "upsample_nearest2d backward", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("upsample_backward_kernel", d.P * d.H * d.W, upsample_backward_kernel<T>,
              static_cast<const T*>(dy), static_cast<T*>(dx), d, scale);
  });
}

void launch_avg_pool2d(DType dtype, const void* x, void* y, Planes d, int64_t k, int64_t stride,
                       int64_t pad, bool count_pad) {
  dispatch_floating(dtype, "avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("avg_pool_kernel", d.P * d.OH * d.OW, avg_pool_kernel<T>, static_cast<const T*>(x),
              static_cast<T*>(y), d, k, stride, pad, count_pad);
  });
}

void launch_avg_pool2d_backward(DType dtype, const void* dy, void* dx, Planes d, int64_t k,
                                int64_t stride, int64_t pad, bool count_pad) {
  dispatch_floating(dtype, "avg_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("avg_pool_backward_kernel", d.P * d.H * d.W, avg_pool_backward_kernel<T>,
              static_cast<const T*>(dy), static_cast<T*>(dx), d, k, stride, pad, count_pad);
  });
}

void launch_max_pool2d(DType dtype, const void* x, void* y, int64_t* indices, Planes d, int64_t k,
                       int64_t stride, int64_t pad) {
  dispatch_floating(dtype, "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("max_pool_kernel", d.P * d.OH * d.OW, max_pool_kernel<T>, static_cast<const T*>(x),
              static_cast<T*>(y), indices, d, k, stride, pad);
  });
}

void launch_max_pool2d_backward(DType dtype, const void* dy, const int64_t* indices, void* dx,
                                Planes d, int64_t k, int64_t stride, int64_t pad,
                                bool deterministic) {
  dispatch_floating(dtype, "max_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    // Windows that do not overlap give each input element at most one gradient: the atomics
    // below add in a fixed result then.
    if (deterministic && k > stride) {
      launch_1d("max_pool_backward_ordered_kernel", d.P * d.H * d.W,
                max_pool_backward_ordered_kernel<T>, static_cast<const T*>(dy), indices,
                static_cast<T*>(dx), d, k, stride, pad);
      return;
    }
    VQ_CUDA_CHECK(cudaMemsetAsync(dx, 0, d.P * d.H * d.W * sizeof(T)));
    launch_1d("max_pool_backward_kernel", d.P * d.OH * d.OW, max_pool_backward_kernel<T>,
              static_cast<const T*>(dy), indices, static_cast<T*>(dx), d);
  });
}

}  // namespace vq::cuda
