#include "nn/checkpoint.h"

#include <cmath>

#include <nlohmann/json.hpp>

namespace vq::nn {

namespace {
constexpr const char* kStateKey = "vqgan.training_state";
constexpr const char* kConfigKey = "vqgan.config";
}  // namespace

void save_checkpoint(const std::string& path, const TensorGroups& groups,
                     const TrainingState& state, const Metadata& extra) {
  NamedTensors all;
  for (const auto& [prefix, tensors] : groups) {
    for (const auto& [name, t] : tensors) all.emplace_back(prefix + name, t);
  }
  nlohmann::json s = {{"version", state.version},
                      {"step", state.step},
                      {"epoch", state.epoch},
                      {"total_steps", state.total_steps},
                      {"epochs_without_improvement", state.epochs_without_improvement},
                      {"maintenance_pending", state.maintenance_pending}};
  s["best_val_loss"] =
      std::isfinite(state.best_val_loss) ? nlohmann::json(state.best_val_loss) : nlohmann::json();
  Metadata metadata = extra;
  metadata["format"] = "pt";  // what Python tools expect of a PyTorch-style state dict
  metadata[kStateKey] = s.dump();
  metadata[kConfigKey] = state.config_json;
  save_safetensors(path, all, metadata);
}

NamedTensors LoadedCheckpoint::group(const std::string& prefix) const {
  NamedTensors out;
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind(prefix, 0) == 0) out.emplace_back(name.substr(prefix.size()), t);
  }
  return out;
}

NamedTensors LoadedCheckpoint::without(const std::vector<std::string>& prefixes) const {
  NamedTensors out;
  for (const auto& [name, t] : file.tensors) {
    bool grouped = false;
    for (const auto& p : prefixes) grouped = grouped || name.rfind(p, 0) == 0;
    if (!grouped) out.emplace_back(name, t);
  }
  return out;
}

LoadedCheckpoint load_checkpoint(const std::string& path) {
  LoadedCheckpoint ck;
  ck.file = load_safetensors(path);
  auto it = ck.file.metadata.find(kStateKey);
  if (it == ck.file.metadata.end()) return ck;
  try {
    const auto s = nlohmann::json::parse(it->second);
    ck.state.version = s.value("version", int64_t{1});
    ck.state.step = s.at("step").get<int64_t>();
    ck.state.epoch = s.at("epoch").get<int64_t>();
    ck.state.total_steps = s.value("total_steps", int64_t{0});
    ck.state.epochs_without_improvement = s.value("epochs_without_improvement", int64_t{0});
    ck.state.maintenance_pending = s.value("maintenance_pending", false);
    ck.state.best_val_loss = s.at("best_val_loss").is_null()
                                 ? std::numeric_limits<double>::infinity()
                                 : s.at("best_val_loss").get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(
        fmt::format("{}: the training state in the metadata is malformed: {}", path, e.what()));
  }
  auto config = ck.file.metadata.find(kConfigKey);
  if (config != ck.file.metadata.end()) ck.state.config_json = config->second;
  ck.has_state = true;
  return ck;
}

}  // namespace vq::nn
