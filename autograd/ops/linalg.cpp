// Matrix products on the backend's strided batched GEMM. Transposed views (from .t() or
// transpose) are passed to the GEMM as transpose flags instead of being copied, which is what
// the backward rules (dA = dC B^T, dB = A^T dC) produce.
#include "autograd/autocast.h"
#include "autograd/ops/op_util.h"

namespace vq {

namespace {

// How a [batch, rows, cols] view is handed to GEMM: as is (row-major) or as the transpose of a
// row-major matrix, with its leading dimension and batch stride.
struct GemmOperand {
  Tensor t;
  bool trans = false;
  int64_t ld = 0, batch_stride = 0;
};

GemmOperand as_gemm_operand(const Tensor& x3) {
  const int64_t rows = x3.size(1), cols = x3.size(2);
  const Shape& st = x3.strides();
  const int64_t batch_stride = x3.size(0) == 1 ? 0 : st[0];
  if ((st[2] == 1 || cols == 1) && st[1] >= std::max<int64_t>(cols, 1))
    return {x3, false, st[1], batch_stride};
  if ((st[1] == 1 || rows == 1) && st[2] >= std::max<int64_t>(rows, 1))
    return {x3, true, st[2], batch_stride};
  const Tensor c = x3.contiguous();
  return {c, false, std::max<int64_t>(cols, 1), rows * cols};
}

// [B, M, K] @ [B, K, N] -> [B, M, N] without autograd.
Tensor batched_product(const Tensor& a, const Tensor& b) {
  const int64_t B = a.size(0), M = a.size(1), K = a.size(2), N = b.size(2);
  Tensor out = Tensor::empty({B, M, N}, a.dtype(), a.device());
  if (out.numel() == 0) return out;  // B, M or N is 0: nothing to compute (GEMM wants ld >= 1)
  if (K == 0) {                      // an empty sum
    backend_for(out).fill(out, 0.0);
    return out;
  }
  const GemmOperand A = as_gemm_operand(a), Bop = as_gemm_operand(b);
  Backend::GemmArgs g;
  g.trans_a = A.trans;
  g.trans_b = Bop.trans;
  g.M = M;
  g.N = N;
  g.K = K;
  g.lda = A.ld;
  g.ldb = Bop.ld;
  g.ldc = N;
  g.batch = B;
  g.stride_a = A.batch_stride;
  g.stride_b = Bop.batch_stride;
  g.stride_c = M * N;
  backend_for(out).gemm(g, A.t, Bop.t, out);
  return out;
}

}  // namespace

Tensor bmm(const Tensor& a, const Tensor& b) {
  check_same("bmm", a, b);
  check_floating("bmm", a);
  check_rank("bmm", a, 3, "[B, M, K]");
  check_rank("bmm", b, 3, "[B, K, N]");
  VQ_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(1),
           "bmm: shapes {} and {} do not multiply (expected [B, M, K] @ [B, K, N])",
           shape_str(a.shape()), shape_str(b.shape()));
  // Under autocast the operands (and in backward the incoming gradient) are rounded to the low
  // precision and multiplied with float32 accumulation, the gradients as the forward was.
  const DType low = autocast_compute_dtype(AutocastOp::Matmul, a.dtype());
  auto in_precision = [low](const Tensor& t) {
    return low == t.dtype() ? t : t.detach().to(low).to(t.dtype());
  };
  const Tensor ar = in_precision(a), br = in_precision(b);
  Tensor out = batched_product(ar, br);
  if (needs_graph({a, b})) {
    // dA = dC B^T, dB = A^T dC
    attach_grad_fn(
        out, "bmm", {a, b},
        [sa = SavedTensor(ar), sb = SavedTensor(br), in_precision](const Tensor& dout, Grads& g) {
          const Tensor d = in_precision(dout);
          if (g.needs(0)) g[0] = batched_product(d, sb.get("bmm").transpose(1, 2));
          if (g.needs(1)) g[1] = batched_product(sa.get("bmm").transpose(1, 2), d);
        });
  }
  return out;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_same("matmul", a, b);
  VQ_CHECK(a.dim() >= 2 && b.dim() >= 2,
           "matmul: both operands need at least 2 dims, got {} and {}", shape_str(a.shape()),
           shape_str(b.shape()));
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  VQ_CHECK(b.size(-2) == K, "matmul: shapes {} and {} do not multiply (inner sizes {} and {})",
           shape_str(a.shape()), shape_str(b.shape()), K, b.size(-2));
  if (b.dim() == 2) {
    // [..., M, K] @ [K, N]: fold the leading dims into M. Sizes are spelled out, never -1: with a
    // zero-size dim the -1 could not be inferred.
    Shape out_shape(a.shape().begin(), a.shape().end() - 1);
    out_shape.push_back(N);
    const Shape rows(a.shape().begin(), a.shape().end() - 1);
    const Tensor a3 = a.reshape({1, shape_numel(rows), K});
    return bmm(a3, b.unsqueeze(0)).reshape(out_shape);
  }
  const Shape batch_a(a.shape().begin(), a.shape().end() - 2),
      batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(batch_a, batch_b, "matmul");
  Shape ea = batch, eb = batch, out_shape = batch;
  ea.insert(ea.end(), {M, K});
  eb.insert(eb.end(), {K, N});
  out_shape.insert(out_shape.end(), {M, N});
  const int64_t B = shape_numel(batch);
  return bmm(a.expand(ea).reshape({B, M, K}), b.expand(eb).reshape({B, K, N})).reshape(out_shape);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_rank("linear", weight, 2, "weight [out, in]");
  VQ_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1),
           "linear: input {} has {} features, weight {} expects {}", shape_str(x.shape()),
           x.dim() ? x.size(-1) : 0, shape_str(weight.shape()), weight.size(1));
  Tensor out = matmul(x.dim() == 1 ? x.unsqueeze(0) : x, weight.t());
  if (x.dim() == 1) out = out.squeeze(0);
  if (bias.defined()) {
    VQ_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0),
             "linear: bias {} does not match weight {}", shape_str(bias.shape()),
             shape_str(weight.shape()));
    out = add(out, bias);
  }
  return out;
}

}  // namespace vq
