// One optimisation step of a VQGAN, shared by the trainer and the training-step benchmark: the
// model, the loss (with its discriminator and perceptual net) and both Adam optimizers, and
//   generator:     forward, loss (L1, perceptual, quantizer terms, adaptive adversarial), backward,
//                  optional gradient clipping;
//   discriminator: once its start step is reached, hinge/vanilla loss on real and reconstructed
//                  images, backward;
//   then one host read of both losses with their gradient norms (a wait for the GPU: the step's
//   only one), which decides the two Adam steps. The discriminator learns from the detached
//   reconstruction, which the generator's update does not change, so stepping both at the end
//   is the same arithmetic as stepping each after its own pass.
// A non-finite generator loss or gradient updates no weights at all; a non-finite discriminator
// loss or gradient (with a finite generator) leaves only the discriminator alone. The
// result says which happened and the caller decides what to do about it. (The quantizer's EMA
// statistics have already seen the batch by then: they only take finite encoder outputs.)
// Random numbers come from streams keyed by the run's seed and their purpose (generator.h).
#pragma once

#include <memory>

#include "models/vqgan.h"
#include "models/vqgan_loss.h"
#include "nn/optim/loss_scaler.h"
#include "nn/optim/optimizer.h"
#include "trainers/config.h"

namespace vq::train {

class TrainStep {
 public:
  // precision: Float32, or BFloat16/Float16 to run forward and backward under autocast (see
  // training_precision()). Float16 always uses dynamic loss scaling; `loss_scaling` turns it on
  // in the other precisions too (harmless there; the tests use it on the CPU).
  TrainStep(const TrainConfig& config, Device device, DType precision = DType::Float32,
            bool loss_scaling = false);

  // What a step measured besides its loss, left on the device: reading a value waits for the
  // GPU, so the trainer reads everything at once (read(), one host read) on steps that log.
  struct Metrics {
    // Scalars; undefined where the term is off (read as 0).
    Tensor l1, perceptual, g_adv, adaptive_weight, commit_loss, codebook_loss, entropy_loss;
    Tensor batch_counts, ema_counts;  // the quantizer's, for the codebook statistics
    double active_threshold = 1.0, dead_threshold = 1.0;

    struct Values {
      double l1 = 0, perceptual = 0, g_adv = 0, adaptive_weight = 0;
      double commit_loss = 0, codebook_loss = 0, entropy_loss = 0;
      models::CodebookStats stats;
    };
    // Under data parallelism every rank must call it (the terms are averaged over ranks; the
    // counts are already the global batch's).
    Values read() const;
  };

  struct Result {
    bool generator_skipped = false;      // nothing was updated
    bool discriminator_skipped = false;  // the generator stepped, the discriminator did not
    std::string nonfinite;               // what was not finite, and what that skipped
    // float16 only: the skipped half's gradients overflowed at a loss scale above 1, so the skip
    // is the loss scaler finding its scale (expected early in a run), not a sign of divergence.
    bool loss_scale_overflow = false;
    double loss_scale = 0;  // the generator's loss scale after the step; 0 without scaling
    // The global batch's losses, read with the gradient norms in the step's one host read (d_loss
    // stays 0 where the discriminator did not run or the generator was skipped).
    double loss = 0, d_loss = 0;
    Metrics metrics;  // of a generator step that was not skipped
  };
  // `step` decides whether the adversarial terms are on; lr and the commitment warm-up scale are
  // the caller's schedule.
  Result run(const Tensor& images, int64_t step, double commitment_scale, double lr);
  // The three parts of run(), public for tests: the generator's forward and backward pass (it
  // keeps the detached reconstruction for the discriminator); the discriminator's, when the
  // adversarial terms are on at `step`; finish(): the one host read and the optimizer steps it
  // decides (the discriminator's only when the generator stepped).
  void generator_pass(const Tensor& images, int64_t step, double commitment_scale, double lr);
  void discriminator_pass(const Tensor& images, int64_t step);
  Result finish();

  models::VQModel& model() { return *model_; }
  models::VQGANLoss& loss() { return *loss_; }
  nn::Adam& generator_optimizer() { return *opt_g_; }
  nn::Adam& discriminator_optimizer() { return *opt_d_; }
  // Dynamic loss scaling, one scaler per optimizer; null without it.
  nn::LossScaler* generator_scaler() { return scaler_g_.get(); }
  nn::LossScaler* discriminator_scaler() { return scaler_d_.get(); }

 private:
  double grad_clip_;
  DType precision_;
  std::unique_ptr<nn::LossScaler> scaler_g_, scaler_d_;
  std::shared_ptr<models::VQModel> model_;
  std::shared_ptr<models::VQGANLoss> loss_;
  std::unique_ptr<nn::Adam> opt_g_, opt_d_;
  // Between the passes and finish(): each pass's [loss, squared gradient norm] (float64, on the
  // device; undefined for a pass that did not run), its loss scale before the pass, and the
  // generator's metrics and reconstruction.
  struct Pending {
    Tensor values;
    double scale = 0;
  };
  Pending pending_g_, pending_d_;
  Metrics pending_metrics_;
  Tensor reconstruction_;
};

// The precision a run's steps compute in: Float32 without --use_amp; with it, --amp_dtype
// (BFloat16 or Float16) where the device's kernels have it natively. A CPU without AVX512_BF16
// trains in Float32 and `note` says why (one line for the run header); --amp_dtype fp16 on the
// CPU and a GPU without the tensor cores for the type are errors.
DType training_precision(const TrainingConfig& t, Device device, std::string* note);

}  // namespace vq::train
