// --config JSON overrides on top of a preset, the checks of the merged config, and writing it back
// (what a checkpoint stores), which must read back to the same config.
#include "fuzz_util.h"
#include "trainers/config.h"

namespace {

void parse(const std::string& text) {
  vq::train::TrainConfig config = vq::train::preset_config("improved", "fmnist");
  config.merge_json(text, "input");
  config.validate();
  vq::train::TrainConfig back = vq::train::preset_config("improved", "fmnist");
  back.merge_json(config.to_json(), "written back");
  if (back.to_json() != config.to_json()) __builtin_trap();  // the round trip lost something
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return vq::fuzz::run_one(data, size, parse);
}
