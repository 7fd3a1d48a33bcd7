// The shared body of our libFuzzer targets: run one parser on the input. A vq::Error (a message
// naming the problem) is the right answer to bad input, so it is caught; anything else (a crash,
// a sanitizer report, another exception, a hang, a huge allocation) is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "autograd/error.h"

namespace vq::fuzz {

inline int run_one(const uint8_t* data, size_t size, void (*parse)(const std::string& input)) {
  try {
    parse(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const Error&) {
  }
  return 0;
}

}  // namespace vq::fuzz
