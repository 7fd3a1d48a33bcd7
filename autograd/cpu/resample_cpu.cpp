// Nearest upsampling and 2-D pooling on contiguous NCHW tensors. Parallel over N*C planes;
// backward kernels gather per input pixel (no write races, deterministic).
// Size letters: P = N*C planes, H W input, OH OW output, k kernel, s stride.
#include <algorithm>
#include <limits>

#include "autograd/cpu/cpu_backend.h"
#include "autograd/cpu/loops.h"

namespace vq::cpu {

namespace {

struct Planes {
  int64_t P, H, W, OH, OW;
};

Planes planes_of(const Tensor& in, const Tensor& out) {
  return {in.size(0) * in.size(1), in.size(2), in.size(3), out.size(2), out.size(3)};
}

template <class F>
void for_each_plane(int64_t P, int64_t plane_size, F&& fn) {
  parallel_for(P, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, plane_size)),
               [&](int64_t p0, int64_t p1) {
                 for (int64_t p = p0; p < p1; ++p) fn(p);
               });
}

}  // namespace

void CpuBackend::upsample_nearest2d(const Tensor& x, int64_t scale, const Tensor& y) {
  const Planes d = planes_of(x, y);
  dispatch_floating(x.dtype(), "upsample_nearest2d", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    T* out = y.data<T>();
    for_each_plane(d.P, d.OH * d.OW, [&](int64_t p) {
      for (int64_t oh = 0; oh < d.OH; ++oh) {
        const T* row = in + (p * d.H + oh / scale) * d.W;
        T* orow = out + (p * d.OH + oh) * d.OW;
        for (int64_t ow = 0; ow < d.OW; ++ow) orow[ow] = row[ow / scale];
      }
    });
  });
}

void CpuBackend::upsample_nearest2d_backward(const Tensor& dy, int64_t scale, const Tensor& dx) {
  const Planes d = planes_of(dx, dy);
  dispatch_floating(dy.dtype(), "upsample_nearest2d backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = dy.data<T>();
    T* out = dx.data<T>();
    // dx[h, w] = sum of the scale x scale block of dy it was copied to
    for_each_plane(d.P, d.OH * d.OW, [&](int64_t p) {
      for (int64_t h = 0; h < d.H; ++h) {
        T* orow = out + (p * d.H + h) * d.W;
        for (int64_t w = 0; w < d.W; ++w) orow[w] = T(0);
        for (int64_t i = 0; i < scale; ++i) {
          const T* grow = g + (p * d.OH + h * scale + i) * d.OW;
          for (int64_t ow = 0; ow < d.OW; ++ow) orow[ow / scale] += grow[ow];
        }
      }
    });
  });
}

namespace {

// A window's divisor: k*k with count_pad, else its positions inside the [0, H) x [0, W) image.
template <class T>
T window_divisor(int64_t oh, int64_t ow, int64_t k, int64_t stride, int64_t pad, bool count_pad,
                 const Planes& d) {
  if (count_pad) return static_cast<T>(k * k);
  auto inside = [&](int64_t o, int64_t n) {
    const int64_t start = o * stride - pad;
    return std::min(start + k, n) - std::max<int64_t>(start, 0);
  };
  return static_cast<T>(inside(oh, d.H) * inside(ow, d.W));
}

}  // namespace

void CpuBackend::avg_pool2d(const Tensor& x, int64_t k, int64_t stride, int64_t pad, bool count_pad,
                            const Tensor& y) {
  const Planes d = planes_of(x, y);
  dispatch_floating(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    T* out = y.data<T>();
    for_each_plane(d.P, d.OH * d.OW, [&](int64_t p) {
      for (int64_t oh = 0; oh < d.OH; ++oh) {
        for (int64_t ow = 0; ow < d.OW; ++ow) {
          T acc = 0;
          for (int64_t i = 0; i < k; ++i) {
            const int64_t h = oh * stride - pad + i;
            if (h < 0 || h >= d.H) continue;
            for (int64_t j = 0; j < k; ++j) {
              const int64_t w = ow * stride - pad + j;
              if (w >= 0 && w < d.W) acc += in[(p * d.H + h) * d.W + w];
            }
          }
          const T inv = T(1) / window_divisor<T>(oh, ow, k, stride, pad, count_pad, d);
          out[(p * d.OH + oh) * d.OW + ow] = acc * inv;
        }
      }
    });
  });
}

void CpuBackend::avg_pool2d_backward(const Tensor& dy, int64_t k, int64_t stride, int64_t pad,
                                     bool count_pad, const Tensor& dx) {
  const Planes d = planes_of(dx, dy);
  dispatch_floating(dy.dtype(), "avg_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = dy.data<T>();
    T* out = dx.data<T>();
    for_each_plane(d.P, d.H * d.W, [&](int64_t p) {
      T* plane = out + p * d.H * d.W;
      for (int64_t i = 0; i < d.H * d.W; ++i) plane[i] = T(0);
      for (int64_t oh = 0; oh < d.OH; ++oh) {
        for (int64_t ow = 0; ow < d.OW; ++ow) {
          const T inv = T(1) / window_divisor<T>(oh, ow, k, stride, pad, count_pad, d);
          const T v = g[(p * d.OH + oh) * d.OW + ow] * inv;
          for (int64_t i = 0; i < k; ++i) {
            const int64_t h = oh * stride - pad + i;
            if (h < 0 || h >= d.H) continue;
            for (int64_t j = 0; j < k; ++j) {
              const int64_t w = ow * stride - pad + j;
              if (w >= 0 && w < d.W) plane[h * d.W + w] += v;
            }
          }
        }
      }
    });
  });
}

void CpuBackend::max_pool2d(const Tensor& x, int64_t k, int64_t stride, int64_t pad,
                            const Tensor& y, const Tensor& indices) {
  const Planes d = planes_of(x, y);
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    T* out = y.data<T>();
    int64_t* idx = indices.data<int64_t>();
    for_each_plane(d.P, d.OH * d.OW, [&](int64_t p) {
      const T* plane = in + p * d.H * d.W;
      for (int64_t oh = 0; oh < d.OH; ++oh) {
        for (int64_t ow = 0; ow < d.OW; ++ow) {
          const int64_t h0 = oh * stride - pad, w0 = ow * stride - pad;
          T best = -std::numeric_limits<T>::infinity();
          // The window's first position inside the image (padding <= k/2 leaves one).
          int64_t best_i = std::max<int64_t>(h0, 0) * d.W + std::max<int64_t>(w0, 0);
          for (int64_t h = std::max<int64_t>(h0, 0); h < std::min(h0 + k, d.H); ++h) {
            for (int64_t w = std::max<int64_t>(w0, 0); w < std::min(w0 + k, d.W); ++w) {
              const int64_t pos = h * d.W + w;
              if (plane[pos] > best) {  // NOTE: ties keep the first position
                best = plane[pos];
                best_i = pos;
              }
            }
          }
          out[(p * d.OH + oh) * d.OW + ow] = best;
          idx[(p * d.OH + oh) * d.OW + ow] = best_i;
        }
      }
    });
  });
}

void CpuBackend::max_pool2d_backward(const Tensor& dy, const Tensor& indices, int64_t /*k*/,
                                     int64_t /*stride*/, int64_t /*pad*/, const Tensor& dx) {
  const Planes d = planes_of(dx, dy);
  dispatch_floating(dy.dtype(), "max_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = dy.data<T>();
    const int64_t* idx = indices.data<int64_t>();
    T* out = dx.data<T>();
    for_each_plane(d.P, d.H * d.W, [&](int64_t p) {
      T* plane = out + p * d.H * d.W;
      for (int64_t i = 0; i < d.H * d.W; ++i) plane[i] = T(0);
      for (int64_t o = 0; o < d.OH * d.OW; ++o)
        plane[idx[p * d.OH * d.OW + o]] += g[p * d.OH * d.OW + o];
    });
  });
}

}  // namespace vq::cpu
