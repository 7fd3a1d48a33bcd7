// Tensor: a cheap handle (shared_ptr) to a TensorImpl, which holds the view (shape, strides,
// offset, dtype) onto a shared Storage, plus the autograd fields. Copying a Tensor copies the
// handle, never the data; clone() copies data.
//
// Views (view, permute, transpose, narrow, expand, ...) share storage; contiguous() copies only
// when needed. Math lives in ops.h as free functions; the members here are the ones users reach
// for on a tensor (views, in-place updates, autograd).
#pragma once

#include <memory>
#include <vector>

#include "autograd/device.h"
#include "autograd/dtype.h"
#include "autograd/error.h"
#include "autograd/shape.h"
#include "autograd/storage.h"

namespace vq {

struct Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (like an empty optional)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // A new uninitialised contiguous tensor.
  static Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = kCPU);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t offset() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const;
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

  // Pointer to the first element (CPU or device address); checks the dtype.
  template <class T>
  T* data() const;
  void* raw_data() const;

  // Values, copied to the CPU.
  double item() const;  // a one-element tensor's value
  template <class T>
  std::vector<T> to_vector() const;  // all elements in row-major order

  // ---- views (share storage) ----
  Tensor view(const Shape& shape) const;     // needs compatible strides; one size may be -1
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // narrow + squeeze
  Tensor expand(const Shape& shape) const;          // -1 keeps a size
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor cpu() const { return to(kCPU); }
  Tensor cuda() const { return to(Device{DeviceType::CUDA, 0}); }

  // ---- in-place updates (optimizers, EMA statistics). They refuse tensors autograd needs. ----
  const Tensor& add_(const Tensor& other, double alpha = 1.0) const;  // self += alpha * other
  const Tensor& add_(double value) const;
  const Tensor& mul_(const Tensor& other) const;
  const Tensor& mul_(double value) const;
  const Tensor& copy_(const Tensor& src) const;  // broadcasts, converts dtype, crosses devices
  const Tensor& zero_() const;
  const Tensor& fill_(double value) const;
  const Tensor& lerp_(const Tensor& end, double weight) const;  // self += weight * (end - self)
  const Tensor& clamp_(double lo, double hi) const;

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& requires_grad_(bool value = true);  // only on leaves
  bool is_leaf() const;
  Tensor grad() const;  // undefined until backward reaches this leaf
  void set_grad(const Tensor& grad) const;
  const std::shared_ptr<Node>& grad_fn() const;
  Tensor detach() const;  // shares storage, no history
  // Points this tensor (every handle to it) at `source`'s storage and view, keeping its autograd
  // identity; how modules move parameters between devices. Clears .grad.
  void set_data(const Tensor& source) const;
  // Reverse-mode gradient of this tensor w.r.t. every leaf that requires grad. `grad` may be left
  // out only for one-element tensors. The graph is freed unless retain_graph.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

 private:
  void require_defined(const char* what) const;
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::Float32;

  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;  // set on results of differentiable ops
};

// A tensor that shares `base`'s storage with a different shape/strides/offset (no autograd).
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset);

}  // namespace vq
