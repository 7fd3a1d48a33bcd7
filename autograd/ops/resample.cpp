// Resampling and padding on NCHW tensors: nearest upsampling, average and max pooling, bilinear
// resizing, and constant padding (a copy into the middle of a filled tensor; backward narrows the
// gradient).
#include <algorithm>

#include "autograd/ops/op_util.h"

namespace vq {

namespace {

void check_nchw(const char* op, const Tensor& x) {
  check_floating(op, x);
  check_rank(op, x, 4, "[N, C, H, W]");
}

// The two taps of every output position when one dim of `n` positions is resized to `m`, as
// PyTorch computes them: the scale n / m rounded to T (float for float32 tensors), the source
// position s = (i + 0.5) * scale - 0.5 in double, clamped at 0; taps floor(s) and the next one
// (the same at the last position), weights 1 - frac(s) and frac(s), frac rounded to T first.
template <typename T>
void bilinear_taps(int64_t n, int64_t m, std::vector<int64_t>& lo, std::vector<int64_t>& hi,
                   std::vector<double>& w_lo, std::vector<double>& w_hi) {
  const double scale = static_cast<T>(n) / static_cast<T>(m);
  for (int64_t i = 0; i < m; ++i) {
    const double source = std::max(scale * (static_cast<double>(i) + 0.5) - 0.5, 0.0);
    const int64_t first = std::min(static_cast<int64_t>(source), n - 1);
    const T frac = static_cast<T>(std::clamp(source - static_cast<double>(first), 0.0, 1.0));
    lo.push_back(first);
    hi.push_back(first < n - 1 ? first + 1 : first);
    w_lo.push_back(static_cast<double>(T(1) - frac));
    w_hi.push_back(static_cast<double>(frac));
  }
}

// x resized along dim (2 or 3 of NCHW) to `size` positions: w_lo * x[lo] + w_hi * x[hi].
Tensor lerp_along(const Tensor& x, int64_t dim, int64_t size) {
  std::vector<int64_t> lo, hi;
  std::vector<double> w_lo, w_hi;
  if (x.dtype() == DType::Float64) {
    bilinear_taps<double>(x.size(dim), size, lo, hi, w_lo, w_hi);
  } else {
    bilinear_taps<float>(x.size(dim), size, lo, hi, w_lo, w_hi);
  }
  const Shape weight_shape = dim == 3 ? Shape{size} : Shape{size, 1};
  auto indices = [&](const std::vector<int64_t>& v) {
    return from_vector<int64_t>(v, {size}).to(x.device());
  };
  auto weights = [&](const std::vector<double>& v) {
    return from_vector<double>(v, weight_shape).to(x.dtype()).to(x.device());
  };
  return add(mul(index_select(x, dim, indices(lo)), weights(w_lo)),
             mul(index_select(x, dim, indices(hi)), weights(w_hi)));
}

}  // namespace

Tensor resize_bilinear(const Tensor& x, int64_t height, int64_t width) {
  check_nchw("resize_bilinear", x);
  VQ_CHECK(height >= 1 && width >= 1, "resize_bilinear: the size must be positive, got {}x{}",
           height, width);
  VQ_CHECK(x.size(2) >= 1 && x.size(3) >= 1, "resize_bilinear: cannot resize an empty image {}",
           shape_str(x.shape()));
  const Tensor wide = x.size(3) == width ? x : lerp_along(x, 3, width);
  return wide.size(2) == height ? wide : lerp_along(wide, 2, height);
}

Tensor upsample_nearest2d(const Tensor& x, int64_t scale) {
  check_nchw("upsample_nearest2d", x);
  VQ_CHECK(scale >= 1, "upsample_nearest2d: scale must be >= 1, got {}", scale);
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty({x.size(0), x.size(1), x.size(2) * scale, x.size(3) * scale}, x.dtype(),
                           x.device());
  backend_for(x).upsample_nearest2d(xc, scale, y);
  if (needs_graph({x})) {
    attach_grad_fn(y, "upsample_nearest2d", {x},
                   [scale, shape = x.shape()](const Tensor& dout, Grads& g) {
                     g[0] = Tensor::empty(shape, dout.dtype(), dout.device());
                     backend_for(dout).upsample_nearest2d_backward(dout.contiguous(), scale, g[0]);
                   });
  }
  return y;
}

Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding,
                  bool count_include_pad) {
  check_nchw("avg_pool2d", x);
  VQ_CHECK(
      kernel >= 1 && stride >= 1 && padding >= 0 && padding * 2 <= kernel,
      "avg_pool2d: need kernel >= 1, stride >= 1 and 0 <= padding <= kernel/2 (got {}, {}, {})",
      kernel, stride, padding);
  const int64_t OH = (x.size(2) + 2 * padding - kernel) / stride + 1;
  const int64_t OW = (x.size(3) + 2 * padding - kernel) / stride + 1;
  VQ_CHECK(OH >= 1 && OW >= 1, "avg_pool2d: input {} is smaller than the kernel {}",
           shape_str(x.shape()), kernel);
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty({x.size(0), x.size(1), OH, OW}, x.dtype(), x.device());
  backend_for(x).avg_pool2d(xc, kernel, stride, padding, count_include_pad, y);
  if (needs_graph({x})) {
    attach_grad_fn(y, "avg_pool2d", {x},
                   [kernel, stride, padding, count_include_pad, shape = x.shape()](
                       const Tensor& dout, Grads& g) {
                     g[0] = Tensor::empty(shape, dout.dtype(), dout.device());
                     backend_for(dout).avg_pool2d_backward(dout.contiguous(), kernel, stride,
                                                           padding, count_include_pad, g[0]);
                   });
  }
  return y;
}

Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  check_nchw("max_pool2d", x);
  VQ_CHECK(
      kernel >= 1 && stride >= 1 && padding >= 0 && padding * 2 <= kernel,
      "max_pool2d: need kernel >= 1, stride >= 1 and 0 <= padding <= kernel/2 (got {}, {}, {})",
      kernel, stride, padding);
  VQ_CHECK(x.size(2) + 2 * padding >= kernel && x.size(3) + 2 * padding >= kernel,
           "max_pool2d: input {} is smaller than the kernel {}", shape_str(x.shape()), kernel);
  const int64_t OH = (x.size(2) + 2 * padding - kernel) / stride + 1;
  const int64_t OW = (x.size(3) + 2 * padding - kernel) / stride + 1;
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty({x.size(0), x.size(1), OH, OW}, x.dtype(), x.device());
  Tensor indices = Tensor::empty(y.shape(), DType::Int64, x.device());
  backend_for(x).max_pool2d(xc, kernel, stride, padding, y, indices);
  if (needs_graph({x})) {
    attach_grad_fn(
        y, "max_pool2d", {x},
        [indices, kernel, stride, padding, shape = x.shape()](const Tensor& dout, Grads& g) {
          g[0] = Tensor::empty(shape, dout.dtype(), dout.device());
          backend_for(dout).max_pool2d_backward(dout.contiguous(), indices, kernel, stride, padding,
                                                g[0]);
        });
  }
  return y;
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  check_defined("pad", x);
  VQ_CHECK(pads.size() % 2 == 0 && static_cast<int64_t>(pads.size()) / 2 <= x.dim(),
           "pad: expected (before, after) pairs for at most {} dims, got {} values", x.dim(),
           pads.size());
  Shape shape = x.shape();
  for (size_t i = 0; i < pads.size() / 2; ++i) {
    const int64_t d = x.dim() - 1 - static_cast<int64_t>(i);
    VQ_CHECK(pads[2 * i] >= 0 && pads[2 * i + 1] >= 0,
             "pad: negative padding [{}] is not supported", fmt::join(pads, ", "));
    shape[d] += pads[2 * i] + pads[2 * i + 1];
  }
  Tensor out = full(shape, value, x.dtype(), x.device());
  // The interior of `out` that holds x.
  auto interior = [pads, ndim = x.dim()](Tensor t, const Shape& inner) {
    for (size_t i = 0; i < pads.size() / 2; ++i) {
      const int64_t d = ndim - 1 - static_cast<int64_t>(i);
      t = t.narrow(d, pads[2 * i], inner[d]);
    }
    return t;
  };
  {
    NoGradGuard no_grad;
    interior(out, x.shape()).copy_(x);
  }
  if (needs_graph({x})) {
    attach_grad_fn(out, "pad", {x}, [interior, shape = x.shape()](const Tensor& dout, Grads& g) {
      g[0] = interior(dout, shape);
    });
  }
  return out;
}

Tensor reflection_pad(const Tensor& x, const std::vector<int64_t>& pads) {
  check_defined("reflection_pad", x);
  VQ_CHECK(pads.size() % 2 == 0 && static_cast<int64_t>(pads.size()) / 2 <= x.dim(),
           "reflection_pad: expected (before, after) pairs for at most {} dims, got {} values",
           x.dim(), pads.size());
  // One gather per padded dim: position k of the output reads input index k - before, mirrored
  // at both ends without repeating the edge (..., 2, 1, [0, 1, ..., n-1], n-2, ...). index_select
  // brings the backward (a scatter-add of the gradient) and both devices.
  Tensor out = x;
  for (size_t i = 0; i < pads.size() / 2; ++i) {
    const int64_t d = x.dim() - 1 - static_cast<int64_t>(i), n = x.size(d);
    const int64_t before = pads[2 * i], after = pads[2 * i + 1];
    VQ_CHECK(before >= 0 && after >= 0 && before < n && after < n,
             "reflection_pad: padding [{}] must be non-negative and below the size of the dim it "
             "pads (dim {} has {})",
             fmt::join(pads, ", "), d, n);
    if (before == 0 && after == 0) continue;
    std::vector<int64_t> index;
    for (int64_t k = -before; k < n + after; ++k)
      index.push_back(k < 0 ? -k : k < n ? k : 2 * (n - 1) - k);
    const auto count = static_cast<int64_t>(index.size());
    out = index_select(out, d, from_vector<int64_t>(index, {count}).to(x.device()));
  }
  return out;
}

}  // namespace vq
