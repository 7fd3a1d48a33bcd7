// The training loop's internals, shared by its three files (not a public header):
//   trainer.cpp      the loop: steps, non-finite handling, the end of an epoch, maintenance
//   run_setup.cpp    building a run (or resuming one), checkpoints
//   run_report.cpp   validation, sample grids, the run header and summary
#pragma once

#include <chrono>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/codebook_stats.h"
#include "models/vqgan.h"
#include "models/vqgan_loss.h"
#include "nn/checkpoint.h"
#include "nn/dist/communicator.h"
#include "nn/optim/lr_schedule.h"
#include "trainers/config.h"
#include "trainers/data/loader.h"
#include "trainers/metrics.h"
#include "trainers/quality.h"
#include "trainers/train_step.h"
#include "trainers/trainer.h"

namespace vq::train {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Validation {
  ImageQuality quality;  // means (ST-LPIPS over the first val_stlpips_images)
  int64_t stlpips_images = 0;
  models::CodebookStats stats;  // over the whole validation set
  int64_t images = 0;
  int64_t unreadable = 0;  // images skipped because they could not be read
};

class TrainingRun {
 public:
  TrainingRun(const TrainConfig& config, const std::string& resume_path);
  TrainSummary go();

 private:
  void log_setup() const;
  std::string precision_description() const;  // "float32" or "bfloat16 autocast (...)"
  void check_resume_fits(const nn::LoadedCheckpoint& resume, const std::string& path) const;
  bool train_step(const Batch& batch);  // false when the step was skipped (non-finite loss)
  void count_nonfinite(const std::string& what);
  Validation validate();
  void evaluate_epoch(int64_t epoch, bool complete);
  bool patience_exhausted() const;
  bool continues() const;
  bool stop_requested() const;  // Ctrl-C or SIGTERM reached any rank
  // Data parallelism: this rank trains on its share of every batch; rank 0 alone prints and
  // writes files. (On GPUs the world becomes a NCCL communicator once the device is known.)
  static dist::Communicator& comm() { return dist::world(); }
  void read_metrics();  // the latest step's pending metrics into last_metrics_ (one host read)
  void run_maintenance();
  void save_samples(int64_t epoch);
  bool save(bool best);  // false when the state was not finite (nothing written)
  std::string paths(const std::string& suffix) const;
  // The float16 loss scalers with their checkpoint prefixes; empty in other precisions.
  std::vector<std::pair<std::string, nn::LossScaler*>> loss_scalers() const;
  std::string summary_json(bool interrupted, double seconds) const;

  TrainConfig config_;
  const TrainingConfig& t_;
  Device device_;
  DType precision_ = DType::Float32;  // what the steps compute in (training_precision())
  std::string precision_note_;        // why --use_amp fell back to float32, if it did
  std::unique_ptr<TrainStep> stepper_;
  models::VQModel* model_ = nullptr;
  models::VQGANLoss* loss_ = nullptr;
  nn::LrSchedule schedule_;
  std::unique_ptr<DataLoader> train_loader_;
  std::shared_ptr<Dataset> val_set_;
  std::unique_ptr<JsonlWriter> metrics_;
  std::unique_ptr<QualityMeter> quality_;  // validation's metrics (holds the ST-LPIPS networks)

  int64_t steps_per_epoch_ = 0, total_steps_ = 0;
  int64_t step_ = 0, epoch_ = 0;
  double best_val_loss_ = std::numeric_limits<double>::infinity();
  int64_t epochs_without_improvement_ = 0;
  int64_t nonfinite_run_ = 0;          // consecutive steps with anything non-finite
  int64_t generator_skipped_ = 0;      // steps that updated nothing
  int64_t discriminator_skipped_ = 0;  // steps whose discriminator update was skipped
  int64_t loss_scale_skips_ = 0;       // of those, float16 overflows that lowered the loss scale
  int64_t upscaled_reported_ = 0;      // small images the log has mentioned
  bool early_stopped_ = false;
  // The epoch end's codebook maintenance has not run yet (see go()).
  bool maintenance_pending_ = false;
  int64_t maintenance_epoch_ = 0, maintenance_codes_ = 0;  // the last one: after epoch, codes
  Validation last_val_;
  std::vector<std::string> epoch_notes_;
  // The latest step's numbers, for the progress bar and the log: its losses, and the rest as of
  // the latest step that logged (read from the device then, from pending_metrics_).
  nlohmann::json last_metrics_;
  TrainStep::Metrics pending_metrics_;
  Clock::time_point interval_start_ = Clock::now();
  int64_t interval_images_ = 0;
  int64_t session_images_ = 0;  // trained in this process (a resumed run counts from its resume)
  // Where this process started: the data-parallel traffic per step is measured from there.
  int64_t session_first_step_ = 0, session_first_payload_ = 0;
};

}  // namespace vq::train
