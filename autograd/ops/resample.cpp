// Resampling and padding on NCHW tensors: nearest upsampling, average and max pooling, and
// constant padding (a copy into the middle of a filled tensor; backward narrows the gradient).
#include "autograd/ops/op_util.h"

namespace vq {

namespace {

void check_nchw(const char* op, const Tensor& x) {
  check_floating(op, x);
  check_rank(op, x, 4, "[N, C, H, W]");
}

}  // namespace

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
