// Loading a trained model for the tools: the checkpoint's tensors, its run config (from the
// metadata our trainer writes) and a VQModel with the weights in place. A plain weight file
// without our metadata (e.g. a taming VQModel exported to safetensors) loads with an explicit
// model config.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/vqgan.h"
#include "nn/checkpoint.h"
#include "trainers/config.h"

namespace vq::train {

struct LoadedModel {
  TrainConfig config;
  std::shared_ptr<models::VQModel> model;
  nn::LoadedCheckpoint checkpoint;
  std::string note;  // what load_weights derived, if anything
};

// Prefixes of a .last checkpoint's tensors that are not the model's: the discriminator, the
// optimizers, float16 loss scalers, and the inputs of an epoch-end codebook maintenance still
// pending.
inline constexpr const char* kPendingMaintenancePrefix = "pending_maintenance.";
inline const std::vector<std::string> kTrainingOnlyPrefixes = {
    "loss.", "optimizer.", "loss_scaler.", kPendingMaintenancePrefix};

// `fallback_model_config` ("fmnist" / "seed256") is used only when the file has no config.
// `allow_nonfinite`: load a file whose tensors hold NaN or infinity (refused otherwise; see
// nn::parse_checkpoint). A config that asks for more weights than the file holds is refused
// before the model is built.
LoadedModel load_model(const std::string& path, Device device,
                       const std::string& fallback_model_config = "", bool allow_nonfinite = false);

// The same for a checkpoint already read (`path` names it in errors).
LoadedModel model_from_checkpoint(nn::LoadedCheckpoint checkpoint, const std::string& path,
                                  Device device, const std::string& fallback_model_config = "");

// Refuses (naming the file) a config that describes more weights than the file holds: checked
// before the model is built, so a damaged config cannot make us allocate gigabytes.
void check_config_fits_file(const TrainConfig& config, const nn::LoadedCheckpoint& checkpoint,
                            const std::string& path);

// The TrainConfig stored in a checkpoint's metadata.
TrainConfig config_of(const nn::LoadedCheckpoint& checkpoint, const std::string& path);

}  // namespace vq::train
