// fmt support: fmt::format("{}", tensor) prints values (summarised when large), shape, dtype and
// device; shapes print with shape_str().
#pragma once

#include <fmt/format.h>

#include <string>

#include "autograd/tensor.h"

namespace vq {
std::string tensor_str(const Tensor& t, int64_t max_elements_per_dim = 6);
}

template <>
struct fmt::formatter<vq::Tensor> : fmt::formatter<std::string> {
  template <class Ctx>
  auto format(const vq::Tensor& t, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(vq::tensor_str(t), ctx);
  }
};
