#include "trainers/model_io.h"

#include <algorithm>
#include <filesystem>

namespace vq::train {

TrainConfig config_of(const nn::LoadedCheckpoint& checkpoint, const std::string& path) {
  TrainConfig config;
  config.merge_json(checkpoint.state.config_json, path + " (stored config)");
  return config;
}

void check_config_fits_file(const TrainConfig& config, const nn::LoadedCheckpoint& checkpoint,
                            const std::string& path) {
  double values = 0;
  for (const auto& [name, t] : checkpoint.file.tensors) values += static_cast<double>(t.numel());
  double needed = config.model.weight_count();
  if (config.quantizer.kind == "vq") {
    const int64_t dim =
        config.quantizer.codebook_dim > 0 ? config.quantizer.codebook_dim : config.model.embed_dim;
    needed += static_cast<double>(config.quantizer.n_embed) * static_cast<double>(dim);
  }
  VQ_CHECK(needed <= values,
           "{}: its config describes a model of {:.4g} weights, but the file holds only {:.4g} "
           "values (the config does not describe this file: damaged, edited, or the wrong "
           "--model_config)",
           path, needed, values);
}

LoadedModel load_model(const std::string& path, Device device,
                       const std::string& fallback_model_config, bool allow_nonfinite) {
  VQ_CHECK(!path.empty(), "no model given (--model_path)");
  VQ_CHECK(std::filesystem::exists(path), "model file '{}' does not exist", path);
  // The model's tensors only: a .last checkpoint's optimizer state and discriminator stay on disk.
  auto model_tensor = [](const std::string& name) {
    return std::none_of(kTrainingOnlyPrefixes.begin(), kTrainingOnlyPrefixes.end(),
                        [&](const std::string& prefix) { return name.rfind(prefix, 0) == 0; });
  };
  return model_from_checkpoint(nn::load_checkpoint(path, allow_nonfinite, model_tensor), path,
                               device, fallback_model_config);
}

LoadedModel model_from_checkpoint(nn::LoadedCheckpoint checkpoint, const std::string& path,
                                  Device device, const std::string& fallback_model_config) {
  LoadedModel out;
  out.checkpoint = std::move(checkpoint);
  if (out.checkpoint.has_state) {
    out.config = config_of(out.checkpoint, path);
    VQ_CHECK(out.config.quantizer.kind != "fsq" || out.checkpoint.state.version >= 2,
             "{}: an FSQ model written by an earlier vqgan.cpp (training state version {}), whose "
             "even levels sat on another grid; it would decode wrongly here: retrain it",
             path, out.checkpoint.state.version);
  } else {
    VQ_CHECK(!fallback_model_config.empty(),
             "{} has no vqgan.cpp config in its metadata (not written by train_vqvae_improved); "
             "pass --model_config "
             "fmnist|seed256 to load it as a plain weight file",
             path);
    out.config = preset_config("improved", fallback_model_config);
    // A plain file decides the codebook size by its own embedding table.
    for (const auto& [name, t] : out.checkpoint.file.tensors) {
      if (name == "quantize.embedding.weight") {
        out.config.quantizer.n_embed = t.size(0);
        out.config.model.embed_dim = t.size(1);
      }
    }
  }
  out.config.model.validate();
  out.config.quantizer.validate();
  check_config_fits_file(out.config, out.checkpoint, path);
  out.model = std::make_shared<models::VQModel>(out.config.model, out.config.quantizer,
                                                out.config.training.seed);
  try {
    out.note = out.model->load_weights(out.checkpoint.without(kTrainingOnlyPrefixes));
  } catch (const Error& e) {
    throw Error(fmt::format("{}: the weights do not fit the model its config describes: {}", path,
                            e.what()));
  }
  out.model->to(device);
  out.model->eval();
  return out;
}

}  // namespace vq::train
