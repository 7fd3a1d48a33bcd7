#include "autograd/format.h"

namespace vq {

namespace {

void append_values(std::string& out, const std::vector<double>& values, const Shape& shape,
                   size_t dim, int64_t offset, int64_t max_per_dim, bool integral) {
  if (dim == shape.size()) {
    out += integral ? fmt::format("{}", static_cast<int64_t>(values[offset]))
                    : fmt::format("{:.4g}", values[offset]);
    return;
  }
  const int64_t n = shape[dim];
  int64_t stride = 1;
  for (size_t d = dim + 1; d < shape.size(); ++d) stride *= shape[d];
  out += '[';
  for (int64_t i = 0; i < n; ++i) {
    if (n > max_per_dim && i == max_per_dim / 2) {
      out += "..., ";
      i = n - max_per_dim / 2;
    }
    append_values(out, values, shape, dim + 1, offset + i * stride, max_per_dim, integral);
    if (i + 1 < n) out += ", ";
  }
  out += ']';
}

}  // namespace

std::string tensor_str(const Tensor& t, int64_t max_elements_per_dim) {
  if (!t.defined()) return "tensor(undefined)";
  std::string out = "tensor(";
  const bool integral = t.dtype() == DType::Int64 || t.dtype() == DType::UInt8;
  append_values(out, t.to_vector<double>(), t.shape(), 0, 0, max_elements_per_dim, integral);
  out += fmt::format(", shape={}, dtype={}", shape_str(t.shape()), dtype_name(t.dtype()));
  if (!t.device().is_cpu()) out += ", device=" + t.device().str();
  if (t.requires_grad()) out += ", requires_grad";
  return out + ")";
}

}  // namespace vq
