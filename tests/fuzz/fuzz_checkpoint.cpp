// The checkpoint loader as the tools and --resume use it: the training state and config in the
// metadata, the model the config describes (refused before building when it asks for more weights
// than the file holds), its weights, and the generator's optimizer state.
#include "fuzz_util.h"
#include "nn/optim/optimizer.h"
#include "trainers/model_io.h"

namespace {

void parse(const std::string& bytes) {
  using namespace vq;
  // A plain weight file is tried as the fmnist model, as `--model_config fmnist` would.
  const train::LoadedModel loaded =
      train::model_from_checkpoint(nn::parse_checkpoint(bytes, "input"), "input", kCPU, "fmnist");
  const nn::NamedTensors state = loaded.checkpoint.group("optimizer.generator.");
  if (state.empty()) return;
  nn::Adam adam(loaded.model->named_parameters(), nn::AdamOptions{});
  adam.load_state_dict(state);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return vq::fuzz::run_one(data, size, parse);
}
