// Inputs for the op table's cases (op_table.cpp, op_table_wide.cpp): float64 on the CPU with fixed
// seeds, shaped to keep finite differences away from an op's kinks.
#pragma once

#include <vector>

#include "autograd/ops.h"

namespace vq::test {

inline Tensor normal(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return randn(shape, gen, DType::Float64);
}
// |N(0,1)| + 0.5: away from 0, for sqrt, log, rsqrt and divisors.
inline Tensor positive(const Shape& shape, uint64_t seed) {
  return add(abs(normal(shape, seed)), 0.5);
}
// N(0,1) pushed at least 0.1 away from 0 (relu, abs, sign and l1's kink).
inline Tensor off_zero(const Shape& shape, uint64_t seed) {
  const Tensor x = normal(shape, seed);
  return add(x, mul(sign(x), 0.1));
}
// Distinct values spaced 0.37 apart in a shuffled order: no ties for max/min/argmax/pooling.
inline Tensor distinct(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  const int64_t n = shape_numel(shape);
  return sub(mul(randperm(n, gen).to(DType::Float64), 0.37), 0.37 * n / 2).reshape(shape);
}
inline Tensor indices(const std::vector<int64_t>& values, const Shape& shape) {
  return from_vector<int64_t>(values, shape);
}

struct OpCase;
// The cases with the shapes, views and dtypes that device kernels get wrong: long rows, both
// operands broadcast, transposed views, integer and low-precision data, zero sizes
// (op_table_wide.cpp).
void add_wide_cases(std::vector<OpCase>& cases);

}  // namespace vq::test
