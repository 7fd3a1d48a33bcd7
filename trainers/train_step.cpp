#include "trainers/train_step.h"

#include <cmath>

#include "autograd/autocast.h"
#include "autograd/backend.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/dist/communicator.h"

namespace vq::train {

DType training_precision(const TrainingConfig& t, Device device, std::string* note) {
  if (!t.use_amp) return DType::Float32;
  VQ_CHECK(!(device.is_cpu() && t.amp_dtype == "fp16"),
           "--amp_dtype fp16: the CPU has no float16 convolution kernels here (oneDNN); use "
           "--amp_dtype bf16");
  const DType low = t.amp_dtype == "fp16" ? DType::Float16 : DType::BFloat16;
  const std::string why_not = backend_for(device).why_no_low_precision(low);
  if (why_not.empty()) return low;
  VQ_CHECK(device.is_cpu(), "--use_amp on {}: {}", device.str(), why_not);
  *note = fmt::format("--use_amp: {}; training in float32", why_not);
  return DType::Float32;
}

namespace {

// Data parallelism: each rank's gradients are those of its share of the global batch; their
// mean over ranks is the gradient of the whole batch's loss. One all-reduce over all of them
// (packed into one buffer), so every rank then takes the same optimizer step and decides the same
// way about non-finite values.
void average_over_ranks(const std::vector<Tensor>& params) {
  dist::Communicator& comm = dist::world();
  if (comm.size() == 1) return;
  NoGradGuard no_grad;
  // Every rank runs the same graph, so the same parameters have gradients on every rank.
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad().reshape({-1}));
  }
  if (grads.empty()) return;
  const Tensor packed = concat(grads, 0);
  comm.all_reduce_mean(packed);
  int64_t offset = 0;
  for (const Tensor& p : params) {
    if (!p.grad().defined()) continue;
    p.grad().copy_(packed.narrow(0, offset, p.numel()).view(p.shape()));
    offset += p.numel();
  }
}

// Backward of `loss`, and whether the gradients it leaves on `params` are finite once the loss
// scaler (float16) has divided its scale back out and clipping (grad_clip > 0) has run. A finite
// loss can still have non-finite gradients (an overflow in backward); Adam would turn them into
// NaN weights and moments, so the caller skips its step then.
bool backward_with_finite_grads(const Tensor& loss, const std::vector<Tensor>& params,
                                nn::LossScaler* scaler, double grad_clip) {
  if (scaler != nullptr) {
    scaler->scale_loss(loss).backward();
    average_over_ranks(params);
    scaler->unscale(params);
  } else {
    loss.backward();
    average_over_ranks(params);
  }
  const bool finite = grad_clip > 0 ? std::isfinite(nn::clip_grad_norm_(params, grad_clip))
                                    : nn::all_finite(params, true);
  if (scaler != nullptr) scaler->update(!finite);
  return finite;
}

}  // namespace

TrainStep::TrainStep(const TrainConfig& config, Device device, DType precision, bool loss_scaling)
    : grad_clip_(config.training.grad_clip), precision_(precision) {
  const TrainingConfig& t = config.training;
  model_ = std::make_shared<models::VQModel>(config.model, config.quantizer, t.seed);
  Generator disc_gen = stream_generator(t.seed, RandomStream::DiscriminatorInit);
  loss_ = std::make_shared<models::VQGANLoss>(config.loss, config.model.out_channels, disc_gen);
  model_->to(device);
  loss_->to(device);
  const nn::AdamOptions adam{.lr = t.lr, .beta1 = t.adam_beta1, .beta2 = t.adam_beta2};
  opt_g_ = std::make_unique<nn::Adam>(model_->named_parameters(), adam);
  opt_d_ = std::make_unique<nn::Adam>(loss_->discriminator().named_parameters(), adam);
  if (loss_scaling || precision == DType::Float16) {
    scaler_g_ = std::make_unique<nn::LossScaler>();
    scaler_d_ = std::make_unique<nn::LossScaler>();
  }
}

TrainStep::Result TrainStep::run(const Tensor& x, int64_t step, double commitment_scale,
                                 double lr) {
  Tensor reconstruction;
  Result r = generator_step(x, step, commitment_scale, lr, &reconstruction);
  if (!r.generator_skipped) discriminator_step(x, reconstruction, step, r);
  if (dist::distributed()) {
    // Each rank's terms are means over its share of the batch: their mean is the global batch's.
    double* terms[] = {&r.loss,   &r.l1,          &r.perceptual,    &r.g_adv,
                       &r.d_loss, &r.commit_loss, &r.codebook_loss, &r.entropy_loss};
    std::vector<double> values;
    for (double* t : terms) values.push_back(*t);
    const Tensor packed = from_vector(values, {static_cast<int64_t>(values.size())});
    dist::world().all_reduce_mean(packed);
    const auto mean = packed.to_vector<double>();
    for (size_t i = 0; i < values.size(); ++i) *terms[i] = mean[i];
  }
  return r;
}

TrainStep::Result TrainStep::generator_step(const Tensor& x, int64_t step, double commitment_scale,
                                            double lr, Tensor* reconstruction) {
  model_->quantizer().set_commitment_scale(commitment_scale);
  model_->quantizer().set_step(step);
  opt_g_->set_lr(lr);
  opt_d_->set_lr(lr);
  AutocastScope autocast(precision_);  // forward and backward; the optimizer is float32 anyway
  const auto out = model_->forward(x);
  const auto g = loss_->generator_loss(x, out.reconstruction, out.quant.loss,
                                       model_->decoder().last_layer_weight(), step);
  Result r;
  r.loss = g.total.item();
  if (!std::isfinite(dist::world().sum(r.loss))) {  // one rank's NaN stops every rank's step
    r.generator_skipped = true;
    r.nonfinite = fmt::format("the loss ({}); the step was skipped", r.loss);
    return r;
  }
  opt_g_->zero_grad();
  const double scale = scaler_g_ ? scaler_g_->scale() : 0.0;
  const bool grads_finite =
      backward_with_finite_grads(g.total, model_->parameters(), scaler_g_.get(), grad_clip_);
  r.loss_scale = scaler_g_ ? scaler_g_->scale() : 0.0;
  if (!grads_finite) {
    opt_g_->zero_grad();
    r.generator_skipped = true;
    r.loss_scale_overflow = scale > 1.0;
    r.nonfinite = scaler_g_ ? fmt::format(
                                  "the gradients at loss scale {}; the step was skipped and the "
                                  "scale lowered to {}",
                                  scale, r.loss_scale)
                            : "the gradients; the step was skipped";
    return r;
  }
  opt_g_->step();
  r.l1 = g.l1;
  r.perceptual = g.perceptual;
  r.g_adv = g.g_adv;
  r.adaptive_weight = g.adaptive_weight;
  r.commit_loss = out.quant.commit_loss;
  r.codebook_loss = out.quant.codebook_loss;
  r.entropy_loss = out.quant.entropy_loss;
  r.stats = out.quant.stats;
  *reconstruction = out.reconstruction.detach();
  return r;
}

void TrainStep::discriminator_step(const Tensor& x, const Tensor& reconstruction, int64_t step,
                                   Result& r) {
  if (!loss_->adversarial_active(step)) return;
  AutocastScope autocast(precision_);
  const auto d = loss_->discriminator_loss(x, reconstruction);
  r.d_loss = d.total.item();
  const double d_loss_sum = dist::world().sum(r.d_loss);
  auto skip = [&](std::string what) {
    opt_d_->zero_grad();
    r.discriminator_skipped = true;
    r.nonfinite = std::move(what) + "; the generator stepped, the discriminator did not";
  };
  if (!std::isfinite(d_loss_sum)) return skip(fmt::format("the discriminator loss ({})", r.d_loss));
  opt_d_->zero_grad();
  const double scale = scaler_d_ ? scaler_d_->scale() : 0.0;
  if (!backward_with_finite_grads(d.total, loss_->discriminator().parameters(), scaler_d_.get(),
                                  0.0)) {
    r.loss_scale_overflow = scale > 1.0;
    return skip(scaler_d_ ? fmt::format("the discriminator's gradients at loss scale {}", scale)
                          : "the discriminator's gradients");
  }
  opt_d_->step();
}

}  // namespace vq::train
