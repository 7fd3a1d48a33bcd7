// One optimisation step of a VQGAN, shared by the trainer and the training-step benchmark: the
// model, the loss (with its discriminator and perceptual net) and both Adam optimizers, and
//   generator:     forward, loss (L1, perceptual, quantizer terms, adaptive adversarial), backward,
//                  optional gradient clipping, Adam;
//   discriminator: once its start step is reached, hinge/vanilla loss on real and reconstructed
//                  images, backward, Adam.
// A non-finite generator loss or gradient norm updates no weights, and a non-finite
// discriminator loss leaves the discriminator alone; the result says so and the caller decides
// what to do about it. (The quantizer's EMA statistics have already seen the batch by then: they
// only take finite encoder outputs.)
#pragma once

#include <memory>

#include "models/vqgan.h"
#include "models/vqgan_loss.h"
#include "nn/optim/optimizer.h"
#include "trainers/config.h"

namespace vq::train {

class TrainStep {
 public:
  TrainStep(const TrainConfig& config, Device device);

  struct Result {
    bool finite = true;
    std::string nonfinite;  // what was not finite, and what that skipped (when !finite)
    double loss = 0, l1 = 0, perceptual = 0, g_adv = 0, adaptive_weight = 0, d_loss = 0;
    double commit_loss = 0, codebook_loss = 0, entropy_loss = 0;
    models::CodebookStats stats;
  };
  // `step` decides whether the adversarial terms are on; lr and the commitment warm-up scale are
  // the caller's schedule.
  Result run(const Tensor& images, int64_t step, double commitment_scale, double lr);

  models::VQModel& model() { return *model_; }
  models::VQGANLoss& loss() { return *loss_; }
  nn::Adam& generator_optimizer() { return *opt_g_; }
  nn::Adam& discriminator_optimizer() { return *opt_d_; }

 private:
  double grad_clip_;
  Generator disc_gen_;
  std::shared_ptr<models::VQModel> model_;
  std::shared_ptr<models::VQGANLoss> loss_;
  std::unique_ptr<nn::Adam> opt_g_, opt_d_;
};

}  // namespace vq::train
