#include "nn/checkpoint.h"

#include <algorithm>
#include <cmath>

#include "nn/file_io.h"
#include "nn/json_input.h"

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

void check_finite(const NamedTensors& tensors, const std::string& source) {
  for (const auto& [name, t] : tensors) {
    if (t.dtype() == DType::Int64 || t.dtype() == DType::UInt8) continue;
    const Tensor values = t.to(DType::Float64).contiguous();
    const double* v = values.data<double>();
    const int64_t bad =
        std::count_if(v, v + values.numel(), [](double x) { return !std::isfinite(x); });
    VQ_CHECK(bad == 0,
             "{}: tensor '{}' holds {} non-finite values (NaN or infinity) out of {}; the trainer "
             "never writes such values, so the file is damaged or was edited",
             source, name, bad, t.numel());
  }
}

namespace {

// The checks and the training state of a file already read.
LoadedCheckpoint checkpoint_of(SafetensorsFile file, const std::string& source,
                               bool allow_nonfinite) {
  LoadedCheckpoint ck;
  ck.file = std::move(file);
  if (!allow_nonfinite) check_finite(ck.file.tensors, source);
  auto it = ck.file.metadata.find(kStateKey);
  if (it == ck.file.metadata.end()) return ck;
  try {
    const auto s = parse_json_input(it->second, source + " (training state)");
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
        fmt::format("{}: the training state in the metadata is malformed: {}", source, e.what()));
  }
  VQ_CHECK(ck.state.step >= 0 && ck.state.epoch >= 0 && ck.state.total_steps >= 0 &&
               ck.state.epochs_without_improvement >= 0,
           "{}: the training state in the metadata has a negative count (step {}, epoch {}, "
           "total_steps {}, epochs_without_improvement {})",
           source, ck.state.step, ck.state.epoch, ck.state.total_steps,
           ck.state.epochs_without_improvement);
  auto config = ck.file.metadata.find(kConfigKey);
  if (config != ck.file.metadata.end()) ck.state.config_json = config->second;
  ck.has_state = true;
  return ck;
}

}  // namespace

LoadedCheckpoint parse_checkpoint(const std::string& bytes, const std::string& source,
                                  bool allow_nonfinite) {
  return checkpoint_of(parse_safetensors(bytes, source), source, allow_nonfinite);
}

LoadedCheckpoint load_checkpoint(const std::string& path, bool allow_nonfinite,
                                 const std::function<bool(const std::string&)>& keep) {
  return checkpoint_of(load_safetensors(path, keep), path, allow_nonfinite);
}

}  // namespace vq::nn
