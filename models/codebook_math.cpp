#include "models/codebook_math.h"

#include "autograd/node.h"
#include "autograd/ops.h"

namespace vq::models {

Tensor squared_distances(const Tensor& a, const Tensor& b) {
  const Tensor a2 = sum(mul(a, a), {1}, true);          // [M, 1]
  const Tensor b2 = sum(mul(b, b), {1}).unsqueeze(0);   // [1, K]
  return add(sub(a2, mul(matmul(a, b.t()), 2.0)), b2);  // [M, K]
}

Tensor unit_rows(const Tensor& x) { return div(x, add(sqrt(sum(mul(x, x), {1}, true)), 1e-12)); }

Tensor all_finite_gate(const Tensor& x) {
  // x * 0 is 0 where x is finite and NaN where it is NaN or inf (a plain sum could overflow).
  return eq(sum(mul(x, 0.0)), zeros({}, x.dtype(), x.device()));
}

void assign_rows(const Tensor& table, const std::vector<int64_t>& rows, const Tensor& values) {
  NoGradGuard no_grad;
  std::vector<float> keep(table.size(0), 1.0f);
  for (int64_t r : rows) keep[r] = 0.0f;
  Shape keep_shape(table.dim(), 1);
  keep_shape[0] = table.size(0);
  const Tensor keep_mask = from_vector(keep, keep_shape, table.device()).to(table.dtype());
  const Tensor index = from_vector(rows, {static_cast<int64_t>(rows.size())}, table.device());
  table.copy_(add(mul(table, keep_mask), index_add(zeros_like(table), 0, index, values)));
}

}  // namespace vq::models
