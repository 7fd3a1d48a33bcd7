// Tensor handle, TensorImpl and Storage basics. Views are in ops/view.cpp, in-place updates in
// ops/inplace.cpp, autograd in engine.cpp.
#include "autograd/tensor.h"

#include "autograd/backend.h"
#include "autograd/node.h"

namespace vq {

Storage::Storage(size_t nbytes, Device device)
    : nbytes_(nbytes), device_(device), backend_(&backend_for(device)) {
  data_ = backend_->allocate(nbytes);
}

Storage::~Storage() { backend_->deallocate(data_, nbytes_); }

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) {
    VQ_CHECK(s >= 0, "empty: negative size in shape {}", shape_str(shape));
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

void Tensor::require_defined(const char* what) const {
  VQ_CHECK(impl_ != nullptr, "{} called on an undefined tensor", what);
}

const Shape& Tensor::shape() const {
  require_defined("shape()");
  return impl_->shape;
}
const Shape& Tensor::strides() const {
  require_defined("strides()");
  return impl_->strides;
}
int64_t Tensor::offset() const {
  require_defined("offset()");
  return impl_->offset;
}
int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const {
  require_defined("dtype()");
  return impl_->dtype;
}
Device Tensor::device() const {
  require_defined("device()");
  return impl_->storage->device();
}
const std::shared_ptr<Storage>& Tensor::storage() const {
  require_defined("storage()");
  return impl_->storage;
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape().size(); i-- > 0;) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(storage()->data()) + offset() * dtype_size(dtype());
}

template <class T>
T* Tensor::data() const {
  VQ_CHECK(dtype() == dtype_of<T>(), "data<{}>() called on a {} tensor", dtype_name(dtype_of<T>()),
           dtype_name(dtype()));
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int64_t* Tensor::data<int64_t>() const;
template uint8_t* Tensor::data<uint8_t>() const;

template <class T>
std::vector<T> Tensor::to_vector() const {
  if (device().is_cpu()) detail::count_host_read();  // else to(kCPU) counts the transfer
  const Tensor host = to(dtype_of<T>()).to(kCPU).contiguous();
  const T* p = host.data<T>();
  return std::vector<T>(p, p + host.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

double Tensor::item() const {
  VQ_CHECK(numel() == 1, "item(): the tensor has {} elements (shape {}), expected exactly 1",
           numel(), shape_str(shape()));
  return to_vector<double>()[0];
}

// ---- autograd fields ----

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }

Tensor& Tensor::requires_grad_(bool value) {
  require_defined("requires_grad_()");
  VQ_CHECK(is_leaf(),
           "requires_grad_(): only leaf tensors can change requires_grad; this one is the "
           "result of '{}' (use detach() first)",
           impl_->grad_fn->name);
  VQ_CHECK(!value || is_floating(dtype()), "requires_grad_(): a {} tensor cannot require grad",
           dtype_name(dtype()));
  impl_->requires_grad = value;
  return *this;
}

bool Tensor::is_leaf() const { return impl_ && impl_->grad_fn == nullptr; }
Tensor Tensor::grad() const { return impl_ ? impl_->grad : Tensor(); }
void Tensor::set_grad(const Tensor& grad) const {
  require_defined("set_grad()");
  VQ_CHECK(!grad.defined() || grad.shape() == shape(),
           "set_grad(): gradient shape {} differs from the tensor's {}", shape_str(grad.shape()),
           shape_str(shape()));
  impl_->grad = grad;
}
const std::shared_ptr<Node>& Tensor::grad_fn() const {
  require_defined("grad_fn()");
  return impl_->grad_fn;
}

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

void Tensor::set_data(const Tensor& source) const {
  require_defined("set_data()");
  VQ_CHECK(source.defined(), "set_data(): the source tensor is undefined");
  VQ_CHECK(is_leaf(), "set_data(): only leaf tensors can be re-pointed");
  impl_->storage = source.storage();
  impl_->shape = source.shape();
  impl_->strides = source.strides();
  impl_->offset = source.offset();
  impl_->dtype = source.dtype();
  impl_->grad = Tensor();
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  run_backward(*this, grad, retain_graph);
}

}  // namespace vq
