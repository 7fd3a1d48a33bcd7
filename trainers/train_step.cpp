#include "trainers/train_step.h"

#include <cmath>

#include "autograd/ops.h"

namespace vq::train {

TrainStep::TrainStep(const TrainConfig& config, Device device)
    : grad_clip_(config.training.grad_clip), disc_gen_(config.training.seed + 1) {
  const TrainingConfig& t = config.training;
  model_ = std::make_shared<models::VQModel>(config.model, config.quantizer, t.seed);
  loss_ = std::make_shared<models::VQGANLoss>(config.loss, config.model.out_channels, disc_gen_);
  model_->to(device);
  loss_->to(device);
  const nn::AdamOptions adam{.lr = t.lr, .beta1 = t.adam_beta1, .beta2 = t.adam_beta2};
  opt_g_ = std::make_unique<nn::Adam>(model_->named_parameters(), adam);
  opt_d_ = std::make_unique<nn::Adam>(loss_->discriminator().named_parameters(), adam);
}

TrainStep::Result TrainStep::run(const Tensor& x, int64_t step, double commitment_scale,
                                 double lr) {
  model_->quantizer().set_commitment_scale(commitment_scale);
  opt_g_->set_lr(lr);
  opt_d_->set_lr(lr);
  const auto out = model_->forward(x);
  const auto g = loss_->generator_loss(x, out.reconstruction, out.quant.loss,
                                       model_->decoder().last_layer_weight(), step);
  Result r;
  r.loss = g.total.item();
  auto skip = [&](std::string what) {
    r.finite = false;
    r.nonfinite = std::move(what);
    return r;
  };
  if (!std::isfinite(r.loss))
    return skip(fmt::format("the loss ({}); the step was skipped", r.loss));
  opt_g_->zero_grad();
  g.total.backward();
  // A finite loss can still have non-finite gradients (an overflow in backward); Adam would turn
  // them into NaN weights and moments.
  const std::vector<Tensor> params = model_->parameters();
  const bool grads_finite = grad_clip_ > 0 ? std::isfinite(nn::clip_grad_norm_(params, grad_clip_))
                                           : nn::all_finite(params, true);
  if (!grads_finite) {
    opt_g_->zero_grad();
    return skip("the gradients; the step was skipped");
  }
  opt_g_->step();
  if (loss_->adversarial_active(step)) {
    const auto d = loss_->discriminator_loss(x, out.reconstruction);
    r.d_loss = d.total.item();
    if (!std::isfinite(r.d_loss)) {
      return skip(fmt::format("the discriminator loss ({}); its update was skipped", r.d_loss));
    }
    opt_d_->zero_grad();
    d.total.backward();
    opt_d_->step();
  }
  r.l1 = g.l1;
  r.perceptual = g.perceptual;
  r.g_adv = g.g_adv;
  r.adaptive_weight = g.adaptive_weight;
  r.commit_loss = out.quant.commit_loss;
  r.codebook_loss = out.quant.codebook_loss;
  r.entropy_loss = out.quant.entropy_loss;
  r.stats = out.quant.stats;
  return r;
}

}  // namespace vq::train
