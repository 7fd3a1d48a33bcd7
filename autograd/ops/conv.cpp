// conv2d: checks, output size, the backend's forward, and its backward rule: dx from the
// backward-data kernel, dweight and dbias from the backward-weights kernel. Under autocast the
// products run in bfloat16 (the shape records it, so backward does too).
// Size letters: N batch, C in channels, O out channels, H W, kH kW, OH OW.
#include "autograd/autocast.h"
#include "autograd/ops/op_util.h"

namespace vq {

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o) {
  check_floating("conv2d", x);
  check_same("conv2d", x, weight);
  check_rank("conv2d", x, 4, "input [N, C, H, W]");
  check_rank("conv2d", weight, 4, "weight [O, C, kH, kW]");
  VQ_CHECK(x.size(1) == weight.size(1), "conv2d: input {} has {} channels but weight {} expects {}",
           shape_str(x.shape()), x.size(1), shape_str(weight.shape()), weight.size(1));
  if (bias.defined()) {
    check_same("conv2d", x, bias);
    VQ_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0),
             "conv2d: bias {} does not match {} output channels", shape_str(bias.shape()),
             weight.size(0));
  }
  for (int i = 0; i < 2; ++i) {
    VQ_CHECK(o.stride[i] >= 1 && o.dilation[i] >= 1 && o.padding[i] >= 0,
             "conv2d: stride and dilation must be >= 1 and padding >= 0 (got stride {}, padding "
             "{}, dilation {})",
             o.stride[i], o.padding[i], o.dilation[i]);
  }
  ConvShape s{x.size(0),
              x.size(1),
              x.size(2),
              x.size(3),
              weight.size(0),
              weight.size(2),
              weight.size(3),
              0,
              0,
              o,
              autocast_compute_dtype(AutocastOp::Conv2d, x.dtype())};
  s.OH = (s.H + 2 * o.padding[0] - o.dilation[0] * (s.kH - 1) - 1) / o.stride[0] + 1;
  s.OW = (s.W + 2 * o.padding[1] - o.dilation[1] * (s.kW - 1) - 1) / o.stride[1] + 1;
  VQ_CHECK(s.OH >= 1 && s.OW >= 1,
           "conv2d: input {} is smaller than the (dilated) kernel {} with padding [{}, {}]",
           shape_str(x.shape()), shape_str(weight.shape()), o.padding[0], o.padding[1]);

  const Tensor xc = x.contiguous(), wc = weight.contiguous();
  const Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
  Tensor y = Tensor::empty({s.N, s.O, s.OH, s.OW}, x.dtype(), x.device());
  backend_for(x).conv2d_forward(s, xc, wc, bc, y);

  if (needs_graph({x, weight, bias})) {
    attach_grad_fn(y, "conv2d", {x, weight, bias},
                   [s, sx = SavedTensor(xc), sw = SavedTensor(wc)](const Tensor& dout, Grads& g) {
                     const Tensor dy = dout.contiguous();
                     Backend& be = backend_for(dy);
                     if (g.needs(0)) {
                       g[0] = Tensor::empty({s.N, s.C, s.H, s.W}, dy.dtype(), dy.device());
                       be.conv2d_backward_data(s, dy, sw.get("conv2d"), g[0]);
                     }
                     if (g.needs(1) || g.needs(2)) {
                       Tensor dw = Tensor::empty({s.O, s.C, s.kH, s.kW}, dy.dtype(), dy.device());
                       Tensor db =
                           g.needs(2) ? Tensor::empty({s.O}, dy.dtype(), dy.device()) : Tensor();
                       be.conv2d_backward_weight(s, dy, sx.get("conv2d"), dw, db);
                       if (g.needs(1)) g[1] = dw;
                       if (g.needs(2)) g[2] = db;
                     }
                   });
  }
  return y;
}

}  // namespace vq
