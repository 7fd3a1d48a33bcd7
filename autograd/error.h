// Errors: every failed check throws vq::Error with a message a user can act on (which op or
// flag, which shapes, dtypes or values, what was expected). Nothing in the project aborts.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace vq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace vq

// VQ_CHECK(cond, "conv2d: expected ... got {}", shape): throws vq::Error when cond is false.
#define VQ_CHECK(cond, ...)                                     \
  do {                                                          \
    if (!(cond)) throw ::vq::Error(::fmt::format(__VA_ARGS__)); \
  } while (0)
