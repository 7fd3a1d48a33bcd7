// Central-difference gradient check (see gradcheck.h).
#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace vq {

namespace {

// Storage offsets (in elements) of every element of t, in row-major order.
std::vector<int64_t> element_offsets(const Tensor& t) {
  std::vector<int64_t> offsets(t.numel());
  std::vector<int64_t> index(t.dim(), 0);
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t off = t.offset();
    for (int64_t d = 0; d < t.dim(); ++d) off += index[d] * t.strides()[d];
    offsets[i] = off;
    for (int64_t d = t.dim() - 1; d >= 0; --d) {
      if (++index[d] < t.size(d)) break;
      index[d] = 0;
    }
  }
  return offsets;
}

}  // namespace

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  std::vector<Tensor> leaves;
  for (const Tensor& in : inputs) {
    VQ_CHECK(!in.defined() || in.device().is_cpu(), "gradcheck: inputs must be CPU tensors");
    // Leaves that already require grad (e.g. a module's parameters, used inside fn) are checked
    // in place; others get a fresh leaf.
    Tensor leaf = in;
    if (leaf.defined() && !(leaf.is_leaf() && leaf.requires_grad())) {
      leaf = in.detach();
      if (is_floating(leaf.dtype())) leaf.requires_grad_(true);
    }
    if (leaf.defined() && leaf.requires_grad()) leaf.set_grad(Tensor());
    leaves.push_back(leaf);
  }

  const Tensor out = fn(leaves);
  VQ_CHECK(out.requires_grad(), "gradcheck: the function's output does not require grad");
  Generator gen(options.seed);
  const Tensor v = randn(out.shape(), gen, out.dtype());
  auto objective = [&](const Tensor& y) { return sum(mul(y, v)).item(); };
  sum(mul(out, v)).backward();

  GradcheckResult result;
  for (size_t i = 0; i < leaves.size(); ++i) {
    const Tensor& leaf = leaves[i];
    if (!leaf.defined() || !leaf.requires_grad()) continue;
    VQ_CHECK(leaf.dtype() == DType::Float64, "gradcheck: input {} is {}; use float64 inputs", i,
             dtype_name(leaf.dtype()));
    const Tensor analytic =
        leaf.grad().defined() ? leaf.grad().contiguous() : zeros(leaf.shape(), leaf.dtype());
    const double* a = analytic.data<double>();
    double* base = static_cast<double*>(leaf.storage()->data());
    const auto offsets = element_offsets(leaf);
    double max_err = 0.0;
    int mismatches = 0;
    std::string lines;
    NoGradGuard no_grad;
    for (int64_t j = 0; j < leaf.numel(); ++j) {
      double& x = base[offsets[j]];
      const double saved = x;
      x = saved + options.eps;
      const double plus = objective(fn(leaves));
      x = saved - options.eps;
      const double minus = objective(fn(leaves));
      x = saved;
      const double numeric = (plus - minus) / (2 * options.eps);
      const double err = std::abs(a[j] - numeric);
      max_err = std::max(max_err, err);
      if (!(err <= options.atol + options.rtol * std::abs(numeric))) {
        if (++mismatches <= 5) {
          lines += fmt::format("    element {}: autograd {:.9g}, finite difference {:.9g}\n", j,
                               a[j], numeric);
        }
      }
    }
    result.max_abs_error = std::max(result.max_abs_error, max_err);
    if (mismatches > 0) {
      result.ok = false;
      result.report +=
          fmt::format("  input {} (shape {}): {} of {} elements differ, max abs error {:.3g}\n{}",
                      i, shape_str(leaf.shape()), mismatches, leaf.numel(), max_err, lines);
    }
  }
  if (result.ok) result.report = fmt::format("  max abs error {:.3g}", result.max_abs_error);
  return result;
}

}  // namespace vq
