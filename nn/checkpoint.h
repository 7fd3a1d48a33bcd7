// Training checkpoints: one safetensors file holding groups of tensors under name prefixes (the
// model's own taming-style names at the top level, optimizer states under "optimizer.<name>.")
// and the training state (step, epoch, planned length, best validation loss, the run's config) as
// JSON strings in the metadata. Written atomically: an interrupted save leaves the previous file
// intact.
#pragma once

#include <functional>

#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "nn/safetensors.h"

namespace vq::nn {

// 2: random streams keyed by purpose and step, epoch-end maintenance after evaluation (and the
// fields total_steps, maintenance_pending). A state without a version is 1.
inline constexpr int64_t kTrainingStateVersion = 2;

struct TrainingState {
  int64_t version = kTrainingStateVersion;
  int64_t step = 0;   // optimizer steps taken
  int64_t epoch = 0;  // epochs completed
  int64_t total_steps =
      0;  // the run's planned length (a cosine schedule depends on it); 0: unknown
  double best_val_loss = std::numeric_limits<double>::infinity();
  int64_t epochs_without_improvement = 0;
  // The epoch end's codebook maintenance has not run yet (the run had ended there); a run that
  // continues from this checkpoint runs it first.
  bool maintenance_pending = false;
  std::string config_json = "{}";  // the run's configuration
};

using TensorGroups = std::vector<std::pair<std::string, NamedTensors>>;  // prefix -> tensors

void save_checkpoint(const std::string& path, const TensorGroups& groups,
                     const TrainingState& state, const Metadata& extra = {});

struct LoadedCheckpoint {
  SafetensorsFile file;
  TrainingState state;
  bool has_state = false;  // false for plain weight files (e.g. exported from PyTorch)
  // Tensors whose names start with `prefix`, with the prefix removed.
  NamedTensors group(const std::string& prefix) const;
  // Tensors that belong to none of the given prefixes (the model's own names).
  NamedTensors without(const std::vector<std::string>& prefixes) const;
};

// Reads and checks a checkpoint. Every floating-point tensor must be finite: the trainer never
// writes NaN or infinity, so one in a file means the file was damaged or edited, and training on
// it or measuring it would report nonsense; the error names the tensor. `allow_nonfinite` lets an
// analysis tool look at such a file anyway. `source` names the bytes in errors.
LoadedCheckpoint parse_checkpoint(const std::string& bytes, const std::string& source,
                                  bool allow_nonfinite = false);
// Reads the file by offset; with `keep`, only the tensors it accepts (a tool that needs the model
// of a .last checkpoint skips its optimizer state), so memory stays near what is loaded.
LoadedCheckpoint load_checkpoint(const std::string& path, bool allow_nonfinite = false,
                                 const std::function<bool(const std::string&)>& keep = {});

// Throws naming the first tensor (and how many of its values) that holds NaN or infinity.
void check_finite(const NamedTensors& tensors, const std::string& source);

}  // namespace vq::nn
