// Elementwise ops. Binary ops broadcast (NumPy rules) by handing the kernel stride-0 views;
// their backward sums each gradient back to its input's shape with sum_to. Unary ops save either
// their input or their output (whichever the derivative needs) and call the fused backward kernel.
#include "autograd/ops/op_util.h"

namespace vq {

namespace {

// A view of t broadcast to `shape` for a kernel (no graph: the op records its own).
Tensor broadcast_view(const Tensor& t, const Shape& shape) {
  NoGradGuard no_grad;
  return t.expand(shape);
}

Tensor binary_forward_op(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_same(name, a, b);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  backend_for(out).binary(op, broadcast_view(a, shape), broadcast_view(b, shape), out);
  return out;
}

Tensor unary_op(UnaryOp op, UnaryParams p, const char* name, const Tensor& x,
                bool differentiable = true) {
  check_floating(name, x);
  Tensor out = empty_like(x);
  backend_for(x).unary(op, p, x, out);
  if (differentiable && needs_graph({x})) {
    const SavedTensor saved(unary_grad_uses_output(op) ? out : x);
    attach_grad_fn(out, name, {x}, [op, p, saved, name](const Tensor& dout, Grads& g) {
      const Tensor& v = saved.get(name);
      Tensor dx = Tensor::empty(dout.shape(), dout.dtype(), dout.device());
      backend_for(dout).unary_backward(op, p, dout, v, dx);
      g[0] = dx;
    });
  }
  return out;
}

Tensor compare_op(CompareOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_same(name, a, b);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape, DType::UInt8, a.device());
  backend_for(out).compare(op, broadcast_view(a, shape), broadcast_view(b, shape), out);
  return out;
}

// The share of the gradient maximum/minimum sends to `a`: 1 where a wins, 1/2 on ties.
Tensor winner_mask(const Tensor& a, const Tensor& b, bool max) {
  const Tensor wins = (max ? gt(a, b) : lt(a, b)).to(a.dtype());
  const Tensor ties = eq(a, b).to(a.dtype());
  return add(wins, mul(ties, 0.5));
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward_op(BinaryOp::Add, "add", a, b);
  if (needs_graph({a, b})) {
    attach_grad_fn(out, "add", {a, b},
                   [sa = a.shape(), sb = b.shape()](const Tensor& dout, Grads& g) {
                     if (g.needs(0)) g[0] = sum_to(dout, sa);
                     if (g.needs(1)) g[1] = sum_to(dout, sb);
                   });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward_op(BinaryOp::Sub, "sub", a, b);
  if (needs_graph({a, b})) {
    attach_grad_fn(out, "sub", {a, b},
                   [sa = a.shape(), sb = b.shape()](const Tensor& dout, Grads& g) {
                     if (g.needs(0)) g[0] = sum_to(dout, sa);
                     if (g.needs(1)) g[1] = sum_to(neg(dout), sb);
                   });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward_op(BinaryOp::Mul, "mul", a, b);
  if (needs_graph({a, b})) {
    // d(ab)/da = b, d(ab)/db = a
    attach_grad_fn(out, "mul", {a, b},
                   [sa = SavedTensor(a), sb = SavedTensor(b)](const Tensor& dout, Grads& g) {
                     const Tensor& lhs = sa.get("mul");
                     const Tensor& rhs = sb.get("mul");
                     if (g.needs(0)) g[0] = sum_to(mul(dout, rhs), lhs.shape());
                     if (g.needs(1)) g[1] = sum_to(mul(dout, lhs), rhs.shape());
                   });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward_op(BinaryOp::Div, "div", a, b);
  if (needs_graph({a, b})) {
    // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -out/b
    attach_grad_fn(
        out, "div", {a, b},
        [sa = a.shape(), sb = SavedTensor(b), so = SavedTensor(out)](const Tensor& dout, Grads& g) {
          const Tensor& rhs = sb.get("div");
          const Tensor gb = div(dout, rhs);
          if (g.needs(0)) g[0] = sum_to(gb, sa);
          if (g.needs(1)) g[1] = sum_to(neg(mul(gb, so.get("div"))), rhs.shape());
        });
  }
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward_op(BinaryOp::Pow, "pow", a, b);
  if (needs_graph({a, b})) {
    // d(a^b)/da = b a^(b-1), d(a^b)/db = a^b log(a)   NOTE: log(a) needs a > 0 for the b-gradient
    attach_grad_fn(out, "pow", {a, b},
                   [sa = SavedTensor(a), sb = SavedTensor(b), so = SavedTensor(out)](
                       const Tensor& dout, Grads& g) {
                     const Tensor& lhs = sa.get("pow");
                     const Tensor& rhs = sb.get("pow");
                     if (g.needs(0))
                       g[0] = sum_to(mul(dout, mul(rhs, pow(lhs, sub(rhs, 1.0)))), lhs.shape());
                     if (g.needs(1))
                       g[1] = sum_to(mul(dout, mul(so.get("pow"), log(lhs))), rhs.shape());
                   });
  }
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward_op(BinaryOp::Maximum, "maximum", a, b);
  if (needs_graph({a, b})) {
    attach_grad_fn(out, "maximum", {a, b},
                   [sa = SavedTensor(a), sb = SavedTensor(b)](const Tensor& dout, Grads& g) {
                     const Tensor& lhs = sa.get("maximum");
                     const Tensor& rhs = sb.get("maximum");
                     if (g.needs(0))
                       g[0] = sum_to(mul(dout, winner_mask(lhs, rhs, true)), lhs.shape());
                     if (g.needs(1))
                       g[1] = sum_to(mul(dout, winner_mask(rhs, lhs, true)), rhs.shape());
                   });
  }
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward_op(BinaryOp::Minimum, "minimum", a, b);
  if (needs_graph({a, b})) {
    attach_grad_fn(out, "minimum", {a, b},
                   [sa = SavedTensor(a), sb = SavedTensor(b)](const Tensor& dout, Grads& g) {
                     const Tensor& lhs = sa.get("minimum");
                     const Tensor& rhs = sb.get("minimum");
                     if (g.needs(0))
                       g[0] = sum_to(mul(dout, winner_mask(lhs, rhs, false)), lhs.shape());
                     if (g.needs(1))
                       g[1] = sum_to(mul(dout, winner_mask(rhs, lhs, false)), rhs.shape());
                   });
  }
  return out;
}

// ---- with a scalar ----
Tensor add(const Tensor& a, double b) { return unary_op(UnaryOp::AddScalar, {b, 0}, "add", a); }
Tensor sub(const Tensor& a, double b) { return unary_op(UnaryOp::AddScalar, {-b, 0}, "sub", a); }
Tensor mul(const Tensor& a, double b) { return unary_op(UnaryOp::MulScalar, {b, 0}, "mul", a); }
Tensor div(const Tensor& a, double b) {
  VQ_CHECK(b != 0.0, "div: division by the scalar 0");
  return unary_op(UnaryOp::MulScalar, {1.0 / b, 0}, "div", a);
}
Tensor pow(const Tensor& a, double exponent) {
  return unary_op(UnaryOp::PowScalar, {exponent, 0}, "pow", a);
}
Tensor rsub(double a, const Tensor& b) { return add(neg(b), a); }

// ---- unary ----
Tensor neg(const Tensor& x) { return unary_op(UnaryOp::Neg, {}, "neg", x); }
Tensor abs(const Tensor& x) { return unary_op(UnaryOp::Abs, {}, "abs", x); }
Tensor sqrt(const Tensor& x) { return unary_op(UnaryOp::Sqrt, {}, "sqrt", x); }
Tensor rsqrt(const Tensor& x) { return unary_op(UnaryOp::Rsqrt, {}, "rsqrt", x); }
Tensor exp(const Tensor& x) { return unary_op(UnaryOp::Exp, {}, "exp", x); }
Tensor log(const Tensor& x) { return unary_op(UnaryOp::Log, {}, "log", x); }
Tensor sigmoid(const Tensor& x) { return unary_op(UnaryOp::Sigmoid, {}, "sigmoid", x); }
Tensor tanh(const Tensor& x) { return unary_op(UnaryOp::Tanh, {}, "tanh", x); }
Tensor relu(const Tensor& x) { return unary_op(UnaryOp::Relu, {}, "relu", x); }
Tensor leaky_relu(const Tensor& x, double slope) {
  return unary_op(UnaryOp::LeakyRelu, {slope, 0}, "leaky_relu", x);
}
Tensor silu(const Tensor& x) { return unary_op(UnaryOp::Silu, {}, "silu", x); }
Tensor softplus(const Tensor& x) { return unary_op(UnaryOp::Softplus, {}, "softplus", x); }
Tensor clamp(const Tensor& x, double lo, double hi) {
  VQ_CHECK(lo <= hi, "clamp: lower bound {} is above upper bound {}", lo, hi);
  return unary_op(UnaryOp::Clamp, {lo, hi}, "clamp", x);
}
Tensor sign(const Tensor& x) { return unary_op(UnaryOp::Sign, {}, "sign", x, false); }
Tensor round(const Tensor& x) { return unary_op(UnaryOp::Round, {}, "round", x, false); }

// ---- comparisons and selection ----
Tensor eq(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Eq, "eq", a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Ne, "ne", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Lt, "lt", a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Le, "le", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Gt, "gt", a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Ge, "ge", a, b); }
Tensor lt(const Tensor& a, double b) { return lt(a, scalar_tensor(b, a.dtype(), a.device())); }
Tensor gt(const Tensor& a, double b) { return gt(a, scalar_tensor(b, a.dtype(), a.device())); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same("where", a, b);
  check_defined("where", cond, "condition");
  VQ_CHECK(cond.dtype() == DType::UInt8, "where: the condition must be a uint8 mask, got {}",
           dtype_name(cond.dtype()));
  VQ_CHECK(cond.device() == a.device(), "where: condition on {} but values on {}",
           cond.device().str(), a.device().str());
  const Shape shape =
      broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  backend_for(out).where(broadcast_view(cond, shape), broadcast_view(a, shape),
                         broadcast_view(b, shape), out);
  if (needs_graph({a, b})) {
    attach_grad_fn(out, "where", {a, b},
                   [cond, sa = a.shape(), sb = b.shape()](const Tensor& dout, Grads& g) {
                     const Tensor zero = zeros({}, dout.dtype(), dout.device());
                     if (g.needs(0)) g[0] = sum_to(where(cond, dout, zero), sa);
                     if (g.needs(1)) g[1] = sum_to(where(cond, zero, dout), sb);
                   });
  }
  return out;
}

}  // namespace vq
