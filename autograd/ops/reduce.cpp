// Reductions. A sum over any set of dims runs as one kernel call per run of adjacent reduced dims
// (each seen as [A, X, B] -> [A, B]), innermost run first, so no permuting copy is needed.
// Backward of sum/mean broadcasts the gradient back (a stride-0 view); max/min route it to the
// winning position with scatter_add.
#include <algorithm>

#include "autograd/ops/op_util.h"

namespace vq {

namespace {

// Sorted unique non-negative dims; empty means all.
std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim,
                                    const char* op) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    for (int64_t d = 0; d < ndim; ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) out.push_back(wrap_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  VQ_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(),
           "{}: a dim is listed twice in [{}]", op, fmt::join(dims, ", "));
  return out;
}

Shape reduced_shape(const Shape& shape, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    const bool reduced = std::binary_search(dims.begin(), dims.end(), d);
    if (!reduced)
      out.push_back(shape[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

// Sum (or max/min) over `dims`, returned with keepdim shape.
Tensor reduce_keepdim(const Tensor& x, const std::vector<int64_t>& dims, ReduceOp op) {
  Tensor cur = x.contiguous();
  Shape shape = x.shape();
  for (size_t i = dims.size(); i-- > 0;) {
    // Extend the run of adjacent dims ending at dims[i].
    size_t j = i;
    while (j > 0 && dims[j - 1] == dims[j] - 1) --j;
    const int64_t first = dims[j], last = dims[i];
    int64_t A = 1, X = 1, B = 1;
    for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
      if (d < first)
        A *= shape[d];
      else if (d <= last)
        X *= shape[d];
      else
        B *= shape[d];
    }
    for (int64_t d = first; d <= last; ++d) shape[d] = 1;
    Tensor out = Tensor::empty(shape, x.dtype(), x.device());
    if (X == 0) {
      VQ_CHECK(op == ReduceOp::Sum, "max/min: cannot reduce over an empty dim (shape {})",
               shape_str(x.shape()));
      backend_for(out).fill(out, 0.0);
    } else {
      backend_for(out).reduce(op, cur, A, X, B, out);
    }
    cur = out;
    i = j;
  }
  return cur;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  check_defined("sum", x);
  const auto dims = normalize_dims(dims_in, x.dim(), "sum");
  Tensor kept;
  {
    NoGradGuard no_grad;
    kept = reduce_keepdim(x, dims, ReduceOp::Sum);
  }
  Tensor out =
      make_view(kept, reduced_shape(x.shape(), dims, keepdim),
                contiguous_strides(reduced_shape(x.shape(), dims, keepdim)), kept.offset());
  if (needs_graph({x})) {
    attach_grad_fn(out, "sum", {x},
                   [in_shape = x.shape(), keep_shape = kept.shape()](const Tensor& dout, Grads& g) {
                     g[0] = dout.reshape(keep_shape).expand(in_shape);
                   });
  }
  return out;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  check_floating("mean", x);
  const auto dims = normalize_dims(dims_in, x.dim(), "mean");
  int64_t count = 1;
  for (int64_t d : dims) count *= x.size(d);
  VQ_CHECK(count > 0, "mean: reducing over zero elements (shape {})", shape_str(x.shape()));
  return mul(sum(x, dims, keepdim), 1.0 / static_cast<double>(count));
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims_in, bool unbiased, bool keepdim) {
  check_floating("var", x);
  const auto dims = normalize_dims(dims_in, x.dim(), "var");
  int64_t count = 1;
  for (int64_t d : dims) count *= x.size(d);
  const int64_t denom = count - (unbiased ? 1 : 0);
  VQ_CHECK(denom > 0, "var: {} elements are too few for the {} estimate", count,
           unbiased ? "unbiased" : "biased");
  const Tensor centred = sub(x, mean(x, dims, true));
  return mul(sum(mul(centred, centred), dims, keepdim), 1.0 / static_cast<double>(denom));
}

namespace {

ValuesIndices max_or_min(const Tensor& x, int64_t dim, bool keepdim, bool min, const char* op) {
  check_defined(op, x);
  dim = wrap_dim(dim, x.dim(), op);
  const Tensor xc = x.contiguous();
  const Shape& shape = x.shape();
  VQ_CHECK(x.dim() == 0 || shape[dim] > 0, "{}: dim {} of shape {} is empty", op, dim,
           shape_str(shape));
  const AxisSplit s = x.dim() == 0 ? AxisSplit{} : split_at(shape, dim);
  const Shape out_shape = x.dim() == 0 ? Shape{} : reduced_shape(shape, {dim}, keepdim);
  Tensor values = Tensor::empty(out_shape, x.dtype(), x.device());
  Tensor indices = Tensor::empty(out_shape, DType::Int64, x.device());
  backend_for(x).arg_reduce(min, xc, s.A, s.X, s.B, values, indices);
  if (needs_graph({x})) {
    // The gradient goes to the winning position only.
    attach_grad_fn(values, op, {x}, [indices, shape, dim, keepdim](const Tensor& dout, Grads& g) {
      if (shape.empty()) {
        g[0] = dout;
        return;
      }
      const Tensor d = keepdim ? dout : dout.unsqueeze(dim);
      const Tensor idx = keepdim ? indices : indices.unsqueeze(dim);
      g[0] = scatter_add(zeros(shape, dout.dtype(), dout.device()), dim, idx, d);
    });
  }
  return {values, indices};
}

}  // namespace

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) {
  return max_or_min(x, dim, keepdim, false, "max");
}
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) {
  return max_or_min(x, dim, keepdim, true, "min");
}
Tensor max(const Tensor& x) { return max(x.reshape({-1}), 0).values; }
Tensor min(const Tensor& x) { return min(x.reshape({-1}), 0).values; }

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard no_grad;
  return max(x, dim, keepdim).indices;
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard no_grad;
  return min(x, dim, keepdim).indices;
}

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const int64_t lead = grad.dim() - static_cast<int64_t>(shape.size());
  VQ_CHECK(lead >= 0, "sum_to: cannot reduce shape {} to the larger {}", shape_str(grad.shape()),
           shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < grad.dim(); ++d) {
    if (d < lead || (shape[d - lead] == 1 && grad.size(d) != 1))
      dims.push_back(d);
    else
      VQ_CHECK(shape[d - lead] == grad.size(d), "sum_to: shape {} does not broadcast to {}",
               shape_str(shape), shape_str(grad.shape()));
  }
  if (dims.empty()) return grad.reshape(shape);
  return sum(grad, dims, true).reshape(shape);
}

Tensor squared_norm(const std::vector<Tensor>& tensors) {
  VQ_CHECK(!tensors.empty(), "squared_norm: no tensors given");
  const Device device = tensors.front().device();
  std::vector<Tensor> xs;
  for (const Tensor& t : tensors) {
    check_defined("squared_norm", t);
    const bool low = t.dtype() == DType::BFloat16 || t.dtype() == DType::Float16;
    VQ_CHECK(is_floating(t.dtype()) || low,
             "squared_norm: expected floating tensors, got {} (shape {})", dtype_name(t.dtype()),
             shape_str(t.shape()));
    VQ_CHECK(t.device() == device, "squared_norm: tensors on different devices ({} and {})",
             device.str(), t.device().str());
    // The kernels read float32 and float64; a bfloat16/float16 tensor is widened (exactly).
    xs.push_back((low ? t.detach().to(DType::Float32) : t.detach()).contiguous());
  }
  const Tensor out = Tensor::empty({}, DType::Float64, device);
  backend_for(out).squared_norm(xs, out);
  return out;
}

}  // namespace vq
