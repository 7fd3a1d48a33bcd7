// The training loop (the seed's vqgan_trainer): generator and discriminator steps, the
// commitment warm-up, LR schedule, validation each epoch (L1, PSNR, codebook utilisation over the
// validation set), early stopping, then the codebook resets that prepare the next epoch, sample
// grids, live monitoring (progress bar and the metrics JSONL) and atomic checkpoints.
//
// Outputs in training.model_dir:
//   <name>.safetensors          best model by validation loss (weights + config + state)
//   <name>.last.safetensors     everything needed to --resume (model, discriminator, optimizers)
//   <name>.metrics.jsonl        one JSON object every log_every steps and at the last step
//   <name>.summary.json         the run's summary (also printed)
// and <sample_dir>/epoch_NNNN.png (validation inputs above their reconstructions).
#pragma once

#include <memory>
#include <string>

#include "trainers/config.h"

namespace vq::train {

struct TrainSummary {
  std::string json;          // the whole summary (as written to <name>.summary.json)
  bool interrupted = false;  // stopped by SIGINT/SIGTERM (the last checkpoint is saved)
};

// Trains `config`; with `resume_path`, continues the run saved there (same step, optimizer state
// and random streams). Throws vq::Error on bad input or a diverging run (after saving nothing
// over the last good checkpoint).
TrainSummary train(const TrainConfig& config, const std::string& resume_path);

// Makes a running train() stop after its current step and save (for signal handlers; safe to
// call from one).
void request_stop();

}  // namespace vq::train
