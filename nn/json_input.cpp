#include "nn/json_input.h"

#include <set>
#include <vector>

#include "autograd/error.h"

namespace vq::nn {

nlohmann::json parse_json_input(std::string_view text, const std::string& source) {
  using Event = nlohmann::json::parse_event_t;
  std::vector<std::set<std::string>> open_objects;  // the keys seen in every open object
  std::string duplicate;
  bool too_deep = false;
  const auto check = [&](int depth, Event event, nlohmann::json& parsed) {
    if ((event == Event::object_start || event == Event::array_start) && depth >= kMaxJsonDepth)
      too_deep = true;
    if (event == Event::object_start) open_objects.emplace_back();
    if (event == Event::object_end && !open_objects.empty()) open_objects.pop_back();
    if (event == Event::key && !open_objects.empty() &&
        !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    // Keeping nothing of a value nested too deep stops the parsed document from growing further.
    return !too_deep;
  };
  nlohmann::json parsed;
  try {
    parsed = nlohmann::json::parse(text.begin(), text.end(), check);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: malformed JSON: {}", source, e.what()));
  }
  VQ_CHECK(!too_deep, "{}: JSON nested deeper than {} levels (the limit kMaxJsonDepth)", source,
           kMaxJsonDepth);
  VQ_CHECK(duplicate.empty(), "{}: the key '{}' appears twice in one JSON object", source,
           duplicate);
  return parsed;
}

}  // namespace vq::nn
