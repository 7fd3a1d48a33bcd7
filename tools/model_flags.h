// What every tool that runs a trained model shares: the flags saying which model and where
// (--model_path --device --num_threads --model_config --allow_nonfinite), loading it, and reading a
// data set at the model's image size and channels.
#pragma once

#include <string>

#include "trainers/data/loader.h"
#include "trainers/flags.h"
#include "trainers/model_io.h"

namespace vq::tools {

struct ModelFlags {
  std::string model_path, device = "cpu", model_config;
  int64_t num_threads = 0;
  bool allow_nonfinite = false;

  // Registers --model_path (described by model_help), --device, --num_threads, --model_config,
  // --allow_nonfinite.
  void add_to(train::Flags& flags,
              const std::string& model_help = "model or checkpoint (.safetensors)");
  // Applies --num_threads, then loads the model onto --device (clear errors for a missing,
  // corrupt or mismatched file come from train::load_model).
  train::LoadedModel load() const;
};

// One in-order pass over `data_dir` (a folder or fashion-mnist[:test|:train]; the test split by
// default), converted to the model's channels and resolution. Fashion-MNIST is refused for a model
// that is not 1-channel 32x32 (a data/model mismatch, usually a forgotten --data_dir).
train::DataLoader model_data(const std::string& data_dir, const models::ModelConfig& model,
                             const train::LoaderOptions& options);
inline constexpr const char* kDataDirHelp =
    "images: a folder, or fashion-mnist[:test|:train] (the default; 1-channel 32x32 models only)";

}  // namespace vq::tools
