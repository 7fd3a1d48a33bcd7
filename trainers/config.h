// A training run's whole configuration: the model, the quantizer and the loss (models/), and the
// training strategy. It round-trips through JSON ({"model": ..., "quantizer": ..., "loss": ...,
// "training": ...}): a run's config is stored in its checkpoints, and --config FILE.json
// overrides any preset value (unknown keys are errors).
#pragma once

#include <string>

#include "models/model_config.h"
#include "models/quantizer.h"
#include "models/vqgan_loss.h"

namespace vq::train {

struct TrainingConfig {
  std::string preset = "improved";
  std::string train_dir = "fashion-mnist:train";
  // Empty: Fashion-MNIST's test split when training on Fashion-MNIST, else 2% of the training
  // images held out (trainers/data/dataset.h, hold_out).
  std::string val_dir;
  std::string model_dir = "runs";
  std::string model_name = "vqgan_improved";
  std::string sample_dir;  // empty: <model_dir>/samples, so one run's files stay together
  std::string device = "cpu";
  bool use_amp = false;            // mixed precision (autograd/autocast.h)
  std::string amp_dtype = "bf16";  // its low precision: bf16 (fp16: CUDA only, not built yet)
  // Reproducible GPU runs: sums in a fixed order and deterministic cuDNN algorithms
  // (autograd/backend.h, set_deterministic); the CPU is deterministic either way.
  bool deterministic = false;
  int64_t batch_size = 64;
  double lr = 2e-4;
  double adam_beta1 = 0.5, adam_beta2 = 0.9;  // taming's
  std::string lr_schedule = "constant";       // constant | warmup | cosine
  int64_t warmup_steps = 0;
  double min_lr = 0.0;
  double grad_clip = 0.0;  // max global gradient norm; 0: off
  int64_t epochs = 5;
  int64_t steps_per_epoch = 50;          // 0: one full pass over the training images
  int64_t max_steps = 0;                 // 0: no limit
  int64_t early_stopping_patience = 10;  // epochs without validation improvement; 0: off
  // The validation number (lower is better) that picks the best model and drives early stopping:
  // l1, stlpips_vgg or stlpips_alex. L1 suits L1-only training; a run with the adversarial and
  // perceptual terms trades L1 for sharpness, so L1 would keep a model from before they acted.
  std::string best_metric = "l1";
  int64_t val_limit = 1000;          // validation images per epoch; 0: all
  int64_t val_stlpips_images = 256;  // of those, how many also get ST-LPIPS; -1: all
  int64_t num_samples = 16;          // images in each sample grid
  int64_t log_every = 10;
  int64_t max_nonfinite_steps = 5;  // consecutive non-finite losses before stopping
  uint64_t seed = 42;
  int64_t num_threads = 0;  // 0: all cores
  int64_t loader_threads = 1;
  // Training images from a folder are cropped at a random place after their short side is resized
  // (taming's augmentation); false: the centre, as validation always is.
  bool random_crop = true;
  // > 0: a folder's image whose short side is below this is skipped as unusable instead of being
  // upscaled (the run counts and reports upscaled images either way).
  int64_t min_image_size = 0;
};

struct TrainConfig {
  models::ModelConfig model;
  models::QuantizerConfig quantizer;
  models::LossConfig loss;
  TrainingConfig training;

  void validate() const;
  std::string to_json() const;
  // Overrides fields from JSON text (the same layout as to_json; any subset). Throws naming an
  // unknown or mistyped key and the source.
  void merge_json(const std::string& json, const std::string& source);
};

// The seed's configurations (its three groups: codebook, trainer, training strategy):
//   "improved": K 64, decay 0.7, T 2.5, entropy 2.0, beta 10 with 5-epoch warm-up, resets
//   "original": the collapsing setup: K 256 growing to 512, decay 0.85, T 1.2, entropy 1.0, no
//   resets
//   "best": beyond the seed: K 1024, 8-dim l2-normalised lookup, EMA, k-means init, per-step
//   dead-code restarts, cosine LR
// All on the named model config ("fmnist" or "seed256").
TrainConfig preset_config(const std::string& preset, const std::string& model_config);

}  // namespace vq::train
