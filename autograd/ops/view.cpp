// View ops (no data copied: new shape/strides/offset over the same storage) and the copying
// conversions contiguous/clone/to. Each view's backward maps the gradient back to the input's
// shape: view/reshape reshape it, permute permutes it back, narrow pads it with zeros, expand sums
// it over the broadcast dims.
#include <numeric>

#include "autograd/ops/op_util.h"

namespace vq {

namespace {

// Strides for viewing (shape, strides) as new_shape without copying, or nullopt (PyTorch's rule:
// each run of merged/split dims must be contiguous within itself).
std::optional<Shape> view_strides(const Shape& shape, const Shape& strides,
                                  const Shape& new_shape) {
  Shape out(new_shape.size());
  // Empty and one-element tensors can take any shape with plain strides.
  if (shape_numel(shape) <= 1) return contiguous_strides(new_shape);
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

Shape infer_shape(const Shape& requested, int64_t numel, const char* op) {
  Shape shape = requested;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      VQ_CHECK(infer < 0, "{}: only one dimension can be -1 in {}", op, shape_str(requested));
      infer = static_cast<int64_t>(i);
    } else {
      VQ_CHECK(shape[i] >= 0, "{}: negative size in {}", op, shape_str(requested));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    VQ_CHECK(known > 0 && numel % known == 0, "{}: cannot infer the -1 in {} for {} elements", op,
             shape_str(requested), numel);
    shape[infer] = numel / known;
  }
  VQ_CHECK(shape_numel(shape) == numel, "{}: shape {} does not hold {} elements", op,
           shape_str(requested), numel);
  return shape;
}

// A view of x with the given geometry whose gradient is reshaped back to x's shape.
Tensor reshaping_view(const Tensor& x, const Shape& shape, const Shape& strides, const char* op) {
  Tensor out = make_view(x, shape, strides, x.offset());
  if (needs_graph({x})) {
    attach_grad_fn(out, op, {x}, [in_shape = x.shape()](const Tensor& dout, Grads& g) {
      g[0] = dout.reshape(in_shape);
    });
  }
  return out;
}

}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), "view");
  const auto strides = view_strides(this->shape(), this->strides(), shape);
  VQ_CHECK(strides.has_value(),
           "view: cannot view shape {} (strides {}) as {} without a copy; use reshape()",
           shape_str(this->shape()), shape_str(this->strides()), shape_str(shape));
  return reshaping_view(*this, shape, *strides, "view");
}

Tensor Tensor::reshape(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), "reshape");
  if (auto strides = view_strides(this->shape(), this->strides(), shape)) {
    return reshaping_view(*this, shape, *strides, "reshape");
  }
  return contiguous().view(shape);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  start_dim = wrap_dim(start_dim, dim(), "flatten");
  end_dim = wrap_dim(end_dim, dim(), "flatten");
  VQ_CHECK(start_dim <= end_dim, "flatten: start_dim {} is after end_dim {}", start_dim, end_dim);
  Shape shape(this->shape().begin(), this->shape().begin() + start_dim);
  int64_t merged = 1;
  for (int64_t d = start_dim; d <= end_dim; ++d) merged *= size(d);
  shape.push_back(merged);
  shape.insert(shape.end(), this->shape().begin() + end_dim + 1, this->shape().end());
  return reshape(shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  VQ_CHECK(static_cast<int64_t>(dims.size()) == dim(),
           "permute: {} dims given for a tensor of shape {}", dims.size(), shape_str(shape()));
  Shape shape(dims.size()), strides(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], dim(), "permute");
    VQ_CHECK(inverse[d] < 0, "permute: dim {} appears twice in [{}]", d, fmt::join(dims, ", "));
    inverse[d] = static_cast<int64_t>(i);
    shape[i] = this->shape()[d];
    strides[i] = this->strides()[d];
  }
  Tensor out = make_view(*this, shape, strides, offset());
  if (needs_graph({*this})) {
    attach_grad_fn(out, "permute", {*this},
                   [inverse](const Tensor& dout, Grads& g) { g[0] = dout.permute(inverse); });
  }
  return out;
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  std::vector<int64_t> dims(dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(dim0, dim(), "transpose")], dims[wrap_dim(dim1, dim(), "transpose")]);
  return permute(dims);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  VQ_CHECK(size(d) == 1, "squeeze: dim {} of shape {} has size {}, not 1", d, shape_str(shape()),
           size(d));
  Shape shape = this->shape(), strides = this->strides();
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return reshaping_view(*this, shape, strides, "squeeze");
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape shape = this->shape(), strides = this->strides();
  const int64_t stride = d < dim() ? strides[d] * shape[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, stride);
  return reshaping_view(*this, shape, strides, "unsqueeze");
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  if (start < 0) start += size(d);
  VQ_CHECK(start >= 0 && length >= 0 && start + length <= size(d),
           "narrow: range [{}, {}) is outside dim {} of shape {}", start, start + length, d,
           shape_str(shape()));
  Shape shape = this->shape();
  shape[d] = length;
  Tensor out = make_view(*this, shape, strides(), offset() + start * strides()[d]);
  if (needs_graph({*this})) {
    attach_grad_fn(out, "narrow", {*this},
                   [in_shape = this->shape(), d, start, length](const Tensor& dout, Grads& g) {
                     Tensor dx = zeros(in_shape, dout.dtype(), dout.device());
                     dx.narrow(d, start, length).copy_(dout);
                     g[0] = dx;
                   });
  }
  return out;
}

Tensor Tensor::select(int64_t d, int64_t index) const { return narrow(d, index, 1).squeeze(d); }

Tensor Tensor::expand(const Shape& requested) const {
  VQ_CHECK(static_cast<int64_t>(requested.size()) >= dim(),
           "expand: target {} has fewer dims than the tensor's shape {}", shape_str(requested),
           shape_str(shape()));
  const size_t lead = requested.size() - shape().size();
  Shape shape(requested.size()), strides(requested.size());
  for (size_t i = 0; i < requested.size(); ++i) {
    const int64_t own = i < lead ? 1 : this->shape()[i - lead];
    const int64_t own_stride = i < lead ? 0 : this->strides()[i - lead];
    const int64_t want = requested[i] == -1 ? own : requested[i];
    VQ_CHECK(own == want || own == 1, "expand: cannot expand shape {} to {} (dim {}: {} -> {})",
             shape_str(this->shape()), shape_str(requested), i, own, want);
    shape[i] = want;
    strides[i] = own == want ? own_stride : 0;
  }
  Tensor out = make_view(*this, shape, strides, offset());
  if (needs_graph({*this})) {
    attach_grad_fn(out, "expand", {*this},
                   [in_shape = this->shape()](const Tensor& dout, Grads& g) {
                     g[0] = sum_to(dout, in_shape);
                   });
  }
  return out;
}

// ---- copying conversions ----

namespace {

// A contiguous copy of x on `device` with `dtype`.
Tensor copy_to(const Tensor& x, DType dtype, Device device) {
  Tensor out = Tensor::empty(x.shape(), dtype, device);
  NoGradGuard no_grad;
  out.copy_(x);
  return out;
}

}  // namespace

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = copy_to(*this, dtype(), device());
  if (needs_graph({*this})) {
    attach_grad_fn(out, "clone", {*this}, [](const Tensor& dout, Grads& g) { g[0] = dout; });
  }
  return out;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == this->dtype()) return *this;
  Tensor out = copy_to(*this, dtype, device());
  if (needs_graph({*this}) && is_floating(dtype)) {
    attach_grad_fn(out, "to(dtype)", {*this},
                   [from = this->dtype()](const Tensor& dout, Grads& g) { g[0] = dout.to(from); });
  }
  return out;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  if (device.is_cpu()) detail::count_host_read();
  Tensor out = copy_to(*this, dtype(), device);
  if (needs_graph({*this})) {
    attach_grad_fn(out, "to(device)", {*this},
                   [from = this->device()](const Tensor& dout, Grads& g) { g[0] = dout.to(from); });
  }
  return out;
}

}  // namespace vq
