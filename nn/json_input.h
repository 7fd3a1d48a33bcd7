// Parsing JSON that came from a file or a user (safetensors headers, checkpoint metadata,
// --config files): malformed text, nesting deeper than kMaxJsonDepth levels and duplicate keys
// (legal JSON, but ambiguous: which value wins?) are errors naming the source.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace vq::nn {

// Deep enough for any file we write (3 levels) and any sensible config; shallow enough that no
// recursive walk over a parsed value (printing, comparing, destroying) can exhaust the stack.
inline constexpr int kMaxJsonDepth = 64;

nlohmann::json parse_json_input(std::string_view text, const std::string& source);

}  // namespace vq::nn
