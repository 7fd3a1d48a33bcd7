// Tensors -> kernel arguments, on the host: for_each_strided coalesces the operands of an
// elementwise op into a Strided<N> (as the CPU's StridedLoop does) and splits the rare shapes
// with more than kMaxDims non-mergeable dims into several launches over the outer dims.
// Size letters: N operands (operand 0 is the output, whose shape all share), n elements.
#pragma once

#include <array>
#include <vector>

#include "autograd/tensor.h"
#include "cuda/kernels.h"

namespace vq::cuda {

template <int N, class F>
void for_each_strided(const std::array<const Tensor*, N>& operands, F&& launch) {
  const Shape& shape = operands[0]->shape();
  if (shape_numel(shape) == 0) return;
  // Drop size-1 dims; merge a dim into the previous (outer) one when every operand steps
  // through both as one (stride[outer] == stride[inner] * size[inner]).
  std::vector<int64_t> sizes;
  std::array<std::vector<int64_t>, N> strides;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !sizes.empty();
    for (int k = 0; k < N && merge; ++k) {
      merge = strides[k].back() == operands[k]->strides()[d] * shape[d];
    }
    if (merge) {
      sizes.back() *= shape[d];
      for (int k = 0; k < N; ++k) strides[k].back() = operands[k]->strides()[d];
    } else {
      sizes.push_back(shape[d]);
      for (int k = 0; k < N; ++k) strides[k].push_back(operands[k]->strides()[d]);
    }
  }
  if (sizes.empty()) {  // a single element
    sizes.push_back(1);
    for (int k = 0; k < N; ++k) strides[k].push_back(0);
  }
  const int ndim = static_cast<int>(sizes.size());
  const int lead = std::max(0, ndim - kMaxDims);  // dims walked on the host
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < ndim; ++d) (d < lead ? outer : inner) *= sizes[d];

  Strided<N> s{};
  s.ndim = ndim - lead;
  s.dense = s.ndim == 1;
  for (int d = lead; d < ndim; ++d) s.sizes[d - lead] = sizes[d];
  for (int k = 0; k < N; ++k) {
    for (int d = lead; d < ndim; ++d) s.strides[k][d - lead] = strides[k][d];
    s.dense = s.dense && (strides[k].back() == 1 || inner == 1);
  }
  for (int64_t o = 0; o < outer; ++o) {
    for (int k = 0; k < N; ++k) {
      int64_t offset = 0, rest = o;
      for (int d = lead - 1; d >= 0; --d) {
        offset += (rest % sizes[d]) * strides[k][d];
        rest /= sizes[d];
      }
      s.data[k] = static_cast<char*>(operands[k]->raw_data()) +
                  offset * static_cast<int64_t>(dtype_size(operands[k]->dtype()));
    }
    launch(s, inner);
  }
}

}  // namespace vq::cuda
