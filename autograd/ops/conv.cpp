// conv2d: checks, output size, the backend's forward, and its backward rule: dx from the
// backward-data kernel, dweight and dbias from the backward-weights kernel. Under autocast the
// products run in the low precision (the shape records it, so backward does too). Where the
// backend takes low-precision operands (CUDA), each operand is cast once: x and w in forward, and
// those low copies are what backward uses; dy once for both backward kernels; the bias gradient
// sums the float32 dy (conv2d_backward_bias). Where the backend wants them so, the low copies are
// channels-last (NHWC memory behind the NCHW shape: what tensor cores read). VQ_CONV_CAST_ONCE=0
// leaves every cast to the kernels (the former way, kept to compare on a GPU). Size letters: N
// batch, C in channels, O out channels, H W, kH kW, OH OW. A weight's low copy is cached until
// the weight changes (low_precision_copy.h); an input that already is the low channels-last
// copy (group_norm_silu_for_conv's result) is used as it is.
#include "autograd/autocast.h"
#include "autograd/low_precision_copy.h"
#include "autograd/node.h"
#include "autograd/ops/op_util.h"
#include "autograd/switches.h"

namespace vq {

namespace {

bool cast_once_enabled() {
  static const bool on = env_switch("VQ_CONV_CAST_ONCE", true);
  return on;
}

}  // namespace

bool conv2d_takes_channels_last_operands(const Backend& backend) {
  return backend.takes_low_precision_operands() && backend.wants_channels_last_operands() &&
         cast_once_enabled();
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o,
              const Tensor& residual) {
  check_defined("conv2d", x);
  // A 16-bit x is the operand group_norm_silu_for_conv wrote: the low copy conv2d would make.
  const bool operand_given = x.dtype() == DType::BFloat16 || x.dtype() == DType::Float16;
  if (operand_given) {
    check_floating("conv2d", weight);
    VQ_CHECK(x.device() == weight.device() &&
                 autocast_compute_dtype(AutocastOp::Conv2d, weight.dtype()) == x.dtype() &&
                 conv2d_takes_channels_last_operands(backend_for(x)) && is_channels_last(x) &&
                 !(x.requires_grad() && x.is_leaf()),
             "conv2d: a {} input must be the channels-last operand group_norm_silu_for_conv "
             "writes under autocast on its device (convert other tensors with to())",
             dtype_name(x.dtype()));
  } else {
    check_floating("conv2d", x);
    check_same("conv2d", x, weight);
  }
  check_rank("conv2d", x, 4, "input [N, C, H, W]");
  check_rank("conv2d", weight, 4, "weight [O, C, kH, kW]");
  VQ_CHECK(x.size(1) == weight.size(1), "conv2d: input {} has {} channels but weight {} expects {}",
           shape_str(x.shape()), x.size(1), shape_str(weight.shape()), weight.size(1));
  if (bias.defined()) {
    check_same("conv2d", weight, bias);
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
              autocast_compute_dtype(AutocastOp::Conv2d, weight.dtype())};
  s.OH = (s.H + 2 * o.padding[0] - o.dilation[0] * (s.kH - 1) - 1) / o.stride[0] + 1;
  s.OW = (s.W + 2 * o.padding[1] - o.dilation[1] * (s.kW - 1) - 1) / o.stride[1] + 1;
  VQ_CHECK(s.OH >= 1 && s.OW >= 1,
           "conv2d: input {} is smaller than the (dilated) kernel {} with padding [{}, {}]",
           shape_str(x.shape()), shape_str(weight.shape()), o.padding[0], o.padding[1]);

  Backend& backend = backend_for(x);
  const bool cast_once =
      operand_given ||
      (s.compute != x.dtype() && backend.takes_low_precision_operands() && cast_once_enabled());
  const bool channels_last = cast_once && backend.wants_channels_last_operands();
  const Tensor xc = cast_once ? low_precision_copy(x, s.compute, channels_last) : x.contiguous();
  const Tensor wc =
      cast_once ? cached_low_precision_copy(weight, s.compute, channels_last) : weight.contiguous();
  const Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
  const Shape y_shape{s.N, s.O, s.OH, s.OW};
  if (residual.defined()) {
    check_same("conv2d", weight, residual);
    VQ_CHECK(residual.shape() == y_shape, "conv2d: the residual {} does not match the result {}",
             shape_str(residual.shape()), shape_str(y_shape));
  }
  const Tensor rc = residual.defined() ? residual.contiguous() : Tensor();
  Tensor y = Tensor::empty(y_shape, weight.dtype(), x.device());
  backend.conv2d_forward(s, xc, wc, bc, rc, y);

  if (needs_graph({x, weight, bias, residual})) {
    // NOTE: with cast_once the saved tensors are the low copies, so an in-place change of x or w
    // after this call is not detected (the copies are what backward needs anyway); a given
    // operand is saved itself.
    attach_grad_fn(
        y, "conv2d", {x, weight, bias, residual},
        [s, cast_once, channels_last, sx = SavedTensor(xc), sw = SavedTensor(wc)](
            const Tensor& dout, Grads& g) {
          const Tensor dy32 = dout.contiguous();
          const Tensor dy = cast_once ? low_precision_copy(dy32, s.compute, channels_last) : dy32;
          Backend& be = backend_for(dy32);
          if (g.needs(0)) {
            g[0] = Tensor::empty({s.N, s.C, s.H, s.W}, dy32.dtype(), dy32.device());
            be.conv2d_backward_data(s, dy, sw.get("conv2d"), g[0]);
          }
          if (g.needs(1) || g.needs(2)) {
            Tensor dw = Tensor::empty({s.O, s.C, s.kH, s.kW}, dy32.dtype(), dy32.device());
            // The kernel sums dy for the bias only when it holds the float32 one.
            const bool db_in_kernel = g.needs(2) && !cast_once;
            Tensor db = db_in_kernel ? Tensor::empty({s.O}, dy32.dtype(), dy32.device()) : Tensor();
            be.conv2d_backward_weight(s, dy, sx.get("conv2d"), dw, db);
            if (g.needs(2) && !db_in_kernel) {
              db = Tensor::empty({s.O}, dy32.dtype(), dy32.device());
              be.conv2d_backward_bias(s, dy32, db);
            }
            if (g.needs(1)) g[1] = dw;
            if (g.needs(2)) g[2] = db;
          }
          if (g.needs(3)) g[3] = dout;  // d(x + r)/dr = 1
        });
  }
  return y;
}

}  // namespace vq
