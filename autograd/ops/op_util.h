// Argument checks shared by the op implementations (internal to autograd/ops/).
#pragma once

#include "autograd/backend.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace vq {

inline void check_defined(const char* op, const Tensor& t, const char* what = "input") {
  VQ_CHECK(t.defined(), "{}: the {} tensor is undefined", op, what);
}

inline void check_floating(const char* op, const Tensor& t) {
  check_defined(op, t);
  VQ_CHECK(is_floating(t.dtype()),
           "{}: expected a float32 or float64 tensor, got {} (shape {}); convert with to()", op,
           dtype_name(t.dtype()), shape_str(t.shape()));
}

inline void check_index(const char* op, const Tensor& t) {
  check_defined(op, t, "index");
  VQ_CHECK(t.dtype() == DType::Int64, "{}: indices must be int64, got {}", op,
           dtype_name(t.dtype()));
}

inline void check_same(const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, a);
  check_defined(op, b);
  VQ_CHECK(a.device() == b.device(), "{}: tensors are on different devices ({} and {})", op,
           a.device().str(), b.device().str());
  VQ_CHECK(a.dtype() == b.dtype(), "{}: dtypes differ ({} with shape {} and {} with shape {})", op,
           dtype_name(a.dtype()), shape_str(a.shape()), dtype_name(b.dtype()),
           shape_str(b.shape()));
}

// Whether conv2d hands `backend` low-precision channels-last operands under autocast (conv.cpp).
bool conv2d_takes_channels_last_operands(const Backend& backend);

inline void check_rank(const char* op, const Tensor& t, int64_t rank, const char* layout) {
  VQ_CHECK(t.dim() == rank, "{}: expected a {}-d tensor {}, got shape {}", op, rank, layout,
           shape_str(t.shape()));
}

inline Tensor empty_like(const Tensor& t) {
  return Tensor::empty(t.shape(), t.dtype(), t.device());
}

// Collapses a tensor's shape around `dim` into (A, X, B): outer, the axis, inner.
struct AxisSplit {
  int64_t A = 1, X = 1, B = 1;
};
inline AxisSplit split_at(const Shape& shape, int64_t dim) {
  AxisSplit s;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < dim) s.A *= shape[d];
    if (d == dim) s.X = shape[d];
    if (d > dim) s.B *= shape[d];
  }
  return s;
}

}  // namespace vq
