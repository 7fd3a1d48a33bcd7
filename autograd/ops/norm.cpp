// Normalisation ops: group_norm, batch_norm (training and evaluation), softmax and log_softmax.
// The kernels compute the statistics and the fused backward (see cpu/norm_cpu.cpp for the math).
#include <cmath>

#include "autograd/autocast.h"
#include "autograd/ops/op_util.h"
#include "autograd/switches.h"

namespace vq {

namespace {

void check_affine(const char* op, const Tensor& x, const Tensor& t, const char* what) {
  if (!t.defined()) return;
  check_same(op, x, t);
  VQ_CHECK(t.dim() == 1 && t.size(0) == x.size(1), "{}: {} has shape {}, expected [{}]", op, what,
           shape_str(t.shape()), x.size(1));
}

// [N, C, *] viewed as contiguous [N, C, S].
Tensor as_ncs(const Tensor& x) { return x.contiguous().view({x.size(0), x.size(1), -1}); }

}  // namespace

namespace {

// group_norm, and with `silu` silu(group_norm(...)) in one pass whose backward recomputes the
// normalised values (they are never stored). A `result` dtype other than x's (16-bit, x 4-d)
// writes the result as a convolution's channels-last operand in that dtype.
Tensor group_norm_op(const char* op, const Tensor& x, int64_t G, const Tensor& weight,
                     const Tensor& bias, double eps, bool silu, DType result) {
  check_floating(op, x);
  VQ_CHECK(x.dim() >= 2, "{}: expected [N, C, ...], got {}", op, shape_str(x.shape()));
  VQ_CHECK(G >= 1 && x.size(1) % G == 0, "{}: {} channels cannot be split into {} groups", op,
           x.size(1), G);
  check_affine(op, x, weight, "weight");
  check_affine(op, x, bias, "bias");
  const int64_t N = x.size(0);
  const Tensor x3 = as_ncs(x);
  Tensor mean = Tensor::empty({N, G}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty({N, G}, x.dtype(), x.device());
  Backend& backend = backend_for(x);
  Tensor y;
  if (result == x.dtype()) {
    y = Tensor::empty(x.shape(), x.dtype(), x.device());
    backend.group_norm(x3, weight, bias, G, eps, silu, y, mean, rstd);
  } else {
    // [N, H, W, C] memory behind the [N, C, H, W] shape: conv2d's low channels-last operand.
    const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
    const Tensor memory = Tensor::empty({N, H, W, C}, result, x.device());
    y = memory.permute({0, 3, 1, 2});
    if (!backend.group_norm_channels_last(x3, weight, bias, G, eps, silu,
                                          memory.view({N, H * W, C}), mean, rstd)) {
      const Tensor y32 = Tensor::empty(x.shape(), x.dtype(), x.device());
      backend.group_norm(x3, weight, bias, G, eps, silu, y32, mean, rstd);
      NoGradGuard no_grad;
      y.copy_(y32);
    }
  }
  if (needs_graph({x, weight, bias})) {
    attach_grad_fn(
        y, op, {x, weight, bias},
        [op, G, silu, x3s = SavedTensor(x3), ws = SavedTensor(weight),
         bs = SavedTensor(silu ? bias : Tensor()), mean, rstd,
         shape = x.shape()](const Tensor& dout, Grads& g) {
          const Tensor& saved_x = x3s.get(op);
          const Tensor& w = ws.get(op);
          const Tensor& b = bs.get(op);
          // (group_norm_silu_for_conv returns a 16-bit operand, but its gradient is float32.)
          VQ_CHECK(dout.dtype() == saved_x.dtype(), "{}: the gradient is {}, expected {}", op,
                   dtype_name(dout.dtype()), dtype_name(saved_x.dtype()));
          const Tensor dy = dout.contiguous().view(saved_x.shape());
          Tensor dx = g.needs(0) ? empty_like(saved_x) : Tensor();
          Tensor dw = g.needs(1) ? empty_like(w) : Tensor();
          Tensor db =
              g.needs(2) ? Tensor::empty({saved_x.size(1)}, dy.dtype(), dy.device()) : Tensor();
          backend_for(dy).group_norm_backward(dy, saved_x, w, b, mean, rstd, G, silu, dx, dw, db);
          if (g.needs(0)) g[0] = dx.view(shape);
          if (g.needs(1)) g[1] = dw;
          if (g.needs(2)) g[2] = db;
        });
  }
  return y;
}

}  // namespace

Tensor group_norm(const Tensor& x, int64_t G, const Tensor& weight, const Tensor& bias,
                  double eps) {
  return group_norm_op("group_norm", x, G, weight, bias, eps, false, x.dtype());
}

Tensor group_norm_silu(const Tensor& x, int64_t G, const Tensor& weight, const Tensor& bias,
                       double eps) {
  return group_norm_op("group_norm_silu", x, G, weight, bias, eps, true, x.dtype());
}

Tensor group_norm_silu_for_conv(const Tensor& x, int64_t G, const Tensor& weight,
                                const Tensor& bias, double eps) {
  check_floating("group_norm_silu_for_conv", x);
  static const bool enabled = env_switch("VQ_NORM_WRITES_CONV_OPERAND", true);
  const DType low = autocast_compute_dtype(AutocastOp::Conv2d, x.dtype());
  const bool operand = enabled && low != x.dtype() && x.dim() == 4 &&
                       conv2d_takes_channels_last_operands(backend_for(x));
  return group_norm_op("group_norm_silu_for_conv", x, G, weight, bias, eps, true,
                       operand ? low : x.dtype());
}

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum,
                  double eps) {
  check_floating("batch_norm", x);
  VQ_CHECK(x.dim() >= 2, "batch_norm: expected [N, C, ...], got {}", shape_str(x.shape()));
  check_affine("batch_norm", x, weight, "weight");
  check_affine("batch_norm", x, bias, "bias");
  check_affine("batch_norm", x, running_mean, "running_mean");
  check_affine("batch_norm", x, running_var, "running_var");
  const int64_t C = x.size(1);
  const Tensor x3 = as_ncs(x);
  Backend& be = backend_for(x);
  Tensor mean, invstd;
  if (training) {
    const int64_t count = x3.size(0) * x3.size(2);
    VQ_CHECK(count > 1, "batch_norm: training needs more than one value per channel, got input {}",
             shape_str(x.shape()));
    mean = Tensor::empty({C}, x.dtype(), x.device());
    Tensor var = Tensor::empty({C}, x.dtype(), x.device());
    be.batch_norm_stats(x3, mean, var);
    invstd = rsqrt(add(var, eps));
    if (running_mean.defined() && running_var.defined()) {
      // Running statistics use the unbiased variance, as PyTorch does.
      NoGradGuard no_grad;
      running_mean.lerp_(mean, momentum);
      running_var.lerp_(mul(var, static_cast<double>(count) / (count - 1)), momentum);
    }
  } else {
    VQ_CHECK(running_mean.defined() && running_var.defined(),
             "batch_norm: evaluation mode needs running_mean and running_var");
    mean = running_mean.detach().clone();
    invstd = rsqrt(add(running_var.detach(), eps));
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  be.batch_norm_apply(x3, mean, invstd, weight, bias, y);
  if (needs_graph({x, weight, bias})) {
    attach_grad_fn(
        y, "batch_norm", {x, weight, bias},
        [training, x3s = SavedTensor(x3), ws = SavedTensor(weight), mean, invstd,
         shape = x.shape()](const Tensor& dout, Grads& g) {
          const Tensor& saved_x = x3s.get("batch_norm");
          const Tensor& w = ws.get("batch_norm");
          const Tensor dy = dout.contiguous().view(saved_x.shape());
          Tensor dx = g.needs(0) ? empty_like(saved_x) : Tensor();
          Tensor dw = g.needs(1) ? empty_like(w) : Tensor();
          Tensor db =
              g.needs(2) ? Tensor::empty({saved_x.size(1)}, dy.dtype(), dy.device()) : Tensor();
          backend_for(dy).batch_norm_backward(dy, saved_x, mean, invstd, w, training, dx, dw, db);
          if (g.needs(0)) g[0] = dx.view(shape);
          if (g.needs(1)) g[1] = dw;
          if (g.needs(2)) g[2] = db;
        });
  }
  return y;
}

namespace {

Tensor softmax_op(const Tensor& x, int64_t dim, bool log, const char* op) {
  check_floating(op, x);
  dim = wrap_dim(dim, x.dim(), op);
  const AxisSplit s = x.dim() == 0 ? AxisSplit{} : split_at(x.shape(), dim);
  const Tensor xc = x.contiguous();
  Tensor y = empty_like(x);
  backend_for(x).softmax(xc, s.A, s.X, s.B, log, y);
  if (needs_graph({x})) {
    attach_grad_fn(y, op, {x}, [s, log, op, ys = SavedTensor(y)](const Tensor& dout, Grads& g) {
      const Tensor& out = ys.get(op);
      g[0] = empty_like(out);
      backend_for(out).softmax_backward(dout.contiguous(), out, s.A, s.X, s.B, log, g[0]);
    });
  }
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, false, "softmax"); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, true, "log_softmax"); }

}  // namespace vq
