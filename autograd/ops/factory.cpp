// Tensor factories: constants, ranges, host data and seeded random streams.
#include <numeric>

#include "autograd/ops/op_util.h"
#include "autograd/philox.h"

namespace vq {

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_for(device).fill(t, value);
  return t;
}
Tensor zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }
Tensor scalar_tensor(double value, DType dtype, Device device) {
  return full({}, value, dtype, device);
}

Tensor arange(int64_t start, int64_t end, DType dtype, Device device) {
  VQ_CHECK(end >= start, "arange: end ({}) is smaller than start ({})", end, start);
  Tensor t = Tensor::empty({end - start}, dtype, device);
  backend_for(device).arange(t, start);
  return t;
}

template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  VQ_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
           "from_vector: {} values do not fill shape {} ({} elements)", values.size(),
           shape_str(shape), shape_numel(shape));
  Tensor t = Tensor::empty(shape, dtype_of<T>(), device);
  backend_for(device).copy_from_host(values.data(), t);
  return t;
}
template Tensor from_vector(const std::vector<float>&, const Shape&, Device);
template Tensor from_vector(const std::vector<double>&, const Shape&, Device);
template Tensor from_vector(const std::vector<int64_t>&, const Shape&, Device);
template Tensor from_vector(const std::vector<uint8_t>&, const Shape&, Device);

Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype,
               Device device) {
  VQ_CHECK(is_floating(dtype), "uniform: dtype must be float32 or float64, got {}",
           dtype_name(dtype));
  Tensor t = Tensor::empty(shape, dtype, device);
  const uint64_t offset = gen.reserve(philox_uniform_counters(t.numel()));
  backend_for(device).uniform(t, lo, hi, gen.seed(), offset);
  return t;
}

Tensor rand(const Shape& shape, Generator& gen, DType dtype, Device device) {
  return uniform(shape, 0.0, 1.0, gen, dtype, device);
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype, Device device) {
  VQ_CHECK(is_floating(dtype), "randn: dtype must be float32 or float64, got {}",
           dtype_name(dtype));
  Tensor t = Tensor::empty(shape, dtype, device);
  const uint64_t offset = gen.reserve(philox_normal_counters(t.numel()));
  backend_for(device).normal(t, 0.0, 1.0, gen.seed(), offset);
  return t;
}

Tensor randint(int64_t lo, int64_t hi, const Shape& shape, Generator& gen, Device device) {
  VQ_CHECK(hi > lo, "randint: empty range [{}, {})", lo, hi);
  // lo + floor(u * (hi - lo)), u in [0, 1): the float64 -> int64 conversion truncates, which is
  // floor for these non-negative values, and u < 1 keeps the result below hi.
  Tensor u = uniform(shape, 0.0, 1.0, gen, DType::Float64, device);
  Tensor offsets = mul(u, static_cast<double>(hi - lo)).to(DType::Int64);
  return add(offsets, scalar_tensor(static_cast<double>(lo), DType::Int64, device));
}

Tensor randperm(int64_t n, Generator& gen, Device device) {
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[gen.next_below(i + 1)]);
  return from_vector(perm, {n}, device);
}

}  // namespace vq
