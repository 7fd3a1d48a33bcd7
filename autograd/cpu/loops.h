// Loop helpers shared by the CPU kernels (internal to autograd/cpu/): a deterministic
// parallel_for (static partition over OpenMP threads, so results never depend on scheduling) and
// an N-operand strided iterator that coalesces dimensions and hands contiguous-or-strided inner
// runs to a callback. Size letters: n elements, N operands.
#pragma once

#include <omp.h>

#include <array>
#include <cstdint>
#include <type_traits>

#include "autograd/tensor.h"

namespace vq::cpu {

// Runs fn(begin, end) over [0, n) split into one contiguous chunk per thread; serial when the
// work is below `grain` or we are already inside a parallel region.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return;
  const int max_threads = omp_get_max_threads();
  if (n <= grain || max_threads <= 1 || omp_in_parallel()) {
    fn(int64_t{0}, n);
    return;
  }
  const int64_t threads = std::min<int64_t>(max_threads, (n + grain - 1) / grain);
#pragma omp parallel num_threads(static_cast <int>(threads))
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t chunk = (n + nt - 1) / nt;
    const int64_t begin = t * chunk, end = std::min(n, begin + chunk);
    if (begin < end) fn(begin, end);
  }
}

// sum over i in [0, n) of value(i), kept in 16 independent partial sums so the compiler can
// vectorise the loop without reassociating float adds (which it may not do without -ffast-math).
// The lane layout is fixed, so the result does not depend on threads.
template <class Acc, class F>
inline Acc lane_sum(int64_t n, F&& value) {
  constexpr int kLanes = 16;
  Acc lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += static_cast<Acc>(value(i + l));
  }
  Acc total = 0;
  for (; i < n; ++i) total += static_cast<Acc>(value(i));
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

// Operands viewed with one common shape (the first is the output); strides in bytes.
template <int N>
struct StridedLoop {
  Shape sizes;                   // after coalescing; innermost last
  std::array<Shape, N> strides;  // bytes, per operand per dim
  std::array<char*, N> base;

  explicit StridedLoop(const std::array<const Tensor*, N>& operands) {
    const Shape& shape = operands[0]->shape();
    const size_t ndim = shape.size();
    for (int k = 0; k < N; ++k) {
      base[k] = static_cast<char*>(operands[k]->raw_data());
      const size_t es = dtype_size(operands[k]->dtype());
      strides[k].resize(ndim);
      for (size_t d = 0; d < ndim; ++d) strides[k][d] = operands[k]->strides()[d] * es;
    }
    // Drop size-1 dims, then merge a dim into its inner neighbour when every operand steps
    // through them as one (stride[outer] == stride[inner] * size[inner]).
    Shape sz;
    std::array<Shape, N> st;
    for (size_t d = 0; d < ndim; ++d) {
      if (shape[d] == 1) continue;
      sz.push_back(shape[d]);
      for (int k = 0; k < N; ++k) st[k].push_back(strides[k][d]);
    }
    sizes.clear();
    for (int k = 0; k < N; ++k) strides[k].clear();
    for (size_t d = 0; d < sz.size(); ++d) {
      bool merge = !sizes.empty();
      for (int k = 0; k < N && merge; ++k) merge = st[k][d - 1] == st[k][d] * sz[d];
      if (merge) {
        sizes.back() *= sz[d];
        for (int k = 0; k < N; ++k) strides[k].back() = st[k][d];
      } else {
        sizes.push_back(sz[d]);
        for (int k = 0; k < N; ++k) strides[k].push_back(st[k][d]);
      }
    }
    if (sizes.empty()) {  // a single element
      sizes.push_back(1);
      for (int k = 0; k < N; ++k) strides[k].push_back(0);
    }
  }

  // Calls inner(ptrs, inner_strides, n) for every innermost run; parallel over runs (and within
  // a run when there is just one).
  template <class F>
  void run(F&& inner, int64_t grain = 32768) const {
    const int64_t n_inner = sizes.back();
    int64_t n_outer = 1;
    for (size_t d = 0; d + 1 < sizes.size(); ++d) n_outer *= sizes[d];
    std::array<int64_t, N> inner_strides;
    for (int k = 0; k < N; ++k) inner_strides[k] = strides[k].back();

    if (n_outer == 1) {
      parallel_for(n_inner, grain, [&](int64_t begin, int64_t end) {
        std::array<char*, N> p;
        for (int k = 0; k < N; ++k) p[k] = base[k] + begin * inner_strides[k];
        inner(p, inner_strides, end - begin);
      });
      return;
    }
    const int64_t row_grain = std::max<int64_t>(1, grain / std::max<int64_t>(n_inner, 1));
    parallel_for(n_outer, row_grain, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        std::array<char*, N> p = base;
        int64_t rest = row;
        for (size_t d = sizes.size() - 1; d-- > 0;) {
          const int64_t idx = rest % sizes[d];
          rest /= sizes[d];
          for (int k = 0; k < N; ++k) p[k] += idx * strides[k][d];
        }
        inner(p, inner_strides, n_inner);
      }
    });
  }
};

// Calls f(T{}) with T the C++ type of a floating dtype; throws naming `op` otherwise.
template <class F>
void dispatch_floating(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::Float32: f(float{}); return;
    case DType::Float64: f(double{}); return;
    default: throw Error(fmt::format("{}: unsupported dtype {}", op, dtype_name(dtype)));
  }
}

// Calls f(T{}) for any dtype with arithmetic (float32, float64, int64, uint8).
template <class F>
void dispatch_arith(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::Float32: f(float{}); return;
    case DType::Float64: f(double{}); return;
    case DType::Int64: f(int64_t{}); return;
    case DType::UInt8: f(uint8_t{}); return;
    default: throw Error(fmt::format("{}: unsupported dtype {}", op, dtype_name(dtype)));
  }
}

}  // namespace vq::cpu
