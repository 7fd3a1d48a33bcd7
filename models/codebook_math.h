// Small helpers shared by the vector quantizer's files (internal to models/).
#pragma once

#include <vector>

#include "autograd/tensor.h"

namespace vq::models {

// ||a_i - b_j||^2 for rows a [M, d] and b [K, d], as ||a||^2 - 2 a.b + ||b||^2 (one GEMM).
Tensor squared_distances(const Tensor& a, const Tensor& b);
// Rows scaled to unit length (rows of zeros stay zero).
Tensor unit_rows(const Tensor& x);
// 1 when every element of x is finite, else 0: a uint8 scalar on x's device, so that an update
// can be gated by where() without a host read.
Tensor all_finite_gate(const Tensor& x);
// Rows `rows` (distinct) of `table` become the rows of `values`; the others stay (no graph).
void assign_rows(const Tensor& table, const std::vector<int64_t>& rows, const Tensor& values);

}  // namespace vq::models
