// One optimisation step of a VQGAN, shared by the trainer and the training-step benchmark: the
// model, the loss (with its discriminator and perceptual net) and both Adam optimizers, and
//   generator:     forward, loss (L1, perceptual, quantizer terms, adaptive adversarial), backward,
//                  optional gradient clipping, Adam;
//   discriminator: once its start step is reached, hinge/vanilla loss on real and reconstructed
//                  images, backward, Adam.
// A non-finite generator loss or gradient updates no weights at all; a non-finite discriminator
// loss or gradient (after the generator has stepped) leaves only the discriminator alone. The
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
    // The global batch's losses: each half reads its loss with its gradient norm (the one host
    // read that decides whether it steps).
    double loss = 0, d_loss = 0;
    Metrics metrics;  // of a generator step that was not skipped
  };
  // `step` decides whether the adversarial terms are on; lr and the commitment warm-up scale are
  // the caller's schedule.
  Result run(const Tensor& images, int64_t step, double commitment_scale, double lr);
  // The two halves of run(), public for tests. The generator's half also gives the
  // reconstruction (detached) that the discriminator's half learns from; the latter runs only
  // when the generator stepped and the adversarial terms are on, and records its outcome in r.
  Result generator_step(const Tensor& images, int64_t step, double commitment_scale, double lr,
                        Tensor* reconstruction);
  void discriminator_step(const Tensor& images, const Tensor& reconstruction, int64_t step,
                          Result& r);

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
};

// The precision a run's steps compute in: Float32 without --use_amp; with it, --amp_dtype
// (BFloat16 or Float16) where the device's kernels have it natively. A CPU without AVX512_BF16
// trains in Float32 and `note` says why (one line for the run header); --amp_dtype fp16 on the
// CPU and a GPU without the tensor cores for the type are errors.
DType training_precision(const TrainingConfig& t, Device device, std::string* note);

}  // namespace vq::train
