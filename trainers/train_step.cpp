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

// What the step's one host read found for one half.
struct Checked {
  double loss = 0;  // the global batch's mean: non-finite on every rank when it is on one
  bool loss_finite = false, grads_finite = false;
};

// Backward of `loss`, the ranks' average, unscaling and clipping (grad_clip > 0); returns what
// the step's host read needs of this half, on the device: [loss, squared norm of the gradients
// it leaves on `params` once the loss scaler (float16) has divided its scale back out], float64.
// A finite loss can still have non-finite gradients (an overflow in backward); Adam would turn
// them into NaN weights and moments, so the half is skipped then. A non-finite loss is
// backpropagated too and its gradients thrown away: deciding before backward would cost a read
// (a wait for the GPU) on every step to save work on rare ones.
Tensor backward_for_check(const Tensor& loss, const std::vector<Tensor>& params,
                          nn::LossScaler* scaler, double grad_clip) {
  if (scaler != nullptr) {
    scaler->scale_loss(loss).backward();
  } else {
    loss.backward();
  }
  average_over_ranks(params);
  if (scaler != nullptr) scaler->unscale(params);
  const Tensor squared_norm = nn::clip_grad_norm_on_device_(params, grad_clip);
  const Tensor loss64 = loss.detach().to(DType::Float64).reshape({1});
  return concat({loss64, squared_norm.defined() ? squared_norm.reshape({1}) : zeros_like(loss64)},
                0);
}

// What a half's two read values mean; updates its loss scaler.
Checked decide(const double* read, nn::LossScaler* scaler) {
  dist::Communicator& comm = dist::world();
  Checked c;
  c.loss = comm.sum(read[0]) / static_cast<double>(comm.size());
  c.loss_finite = std::isfinite(c.loss);
  // The gradients were averaged over ranks: a non-finite one anywhere is non-finite everywhere.
  c.grads_finite = c.loss_finite && std::isfinite(read[1]);
  // A non-finite loss is not an overflow in backward: the scale stays.
  if (scaler != nullptr && c.loss_finite) scaler->update(!c.grads_finite);
  return c;
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

TrainStep::Metrics::Values TrainStep::Metrics::read() const {
  const Device device = batch_counts.device();
  const Tensor* terms[] = {&l1,          &perceptual,    &g_adv,       &adaptive_weight,
                           &commit_loss, &codebook_loss, &entropy_loss};
  std::vector<Tensor> scalars;
  for (const Tensor* t : terms) {
    scalars.push_back(t->defined() ? t->to(DType::Float64).reshape({1})
                                   : zeros({1}, DType::Float64, device));
  }
  Tensor packed = concat(scalars, 0);
  // Each rank's terms are means over its share of the batch: their mean is the global batch's.
  dist::world().all_reduce_mean(packed);
  const int64_t K = batch_counts.numel();
  const std::vector<double> v =
      concat({packed, batch_counts.to(DType::Float64), ema_counts.to(DType::Float64)}, 0)
          .to_vector<double>();  // the one host read
  Values out;
  double* fields[] = {&out.l1,          &out.perceptual,    &out.g_adv,       &out.adaptive_weight,
                      &out.commit_loss, &out.codebook_loss, &out.entropy_loss};
  for (size_t i = 0; i < std::size(fields); ++i) *fields[i] = v[i];
  const auto counts_at = v.begin() + static_cast<std::ptrdiff_t>(std::size(fields));
  const std::vector<int64_t> batch(counts_at, counts_at + K);  // whole numbers below 2^53
  const std::vector<double> ema(counts_at + K, counts_at + 2 * K);
  out.stats = models::codebook_stats(batch, ema, active_threshold, dead_threshold);
  return out;
}

TrainStep::Result TrainStep::run(const Tensor& x, int64_t step, double commitment_scale,
                                 double lr) {
  generator_pass(x, step, commitment_scale, lr);
  discriminator_pass(x, step);
  return finish();
}

void TrainStep::generator_pass(const Tensor& x, int64_t step, double commitment_scale, double lr) {
  model_->quantizer().set_commitment_scale(commitment_scale);
  model_->quantizer().set_step(step);
  opt_g_->set_lr(lr);
  opt_d_->set_lr(lr);
  AutocastScope autocast(precision_);  // forward and backward; the optimizer is float32 anyway
  const auto out = model_->forward(x);
  const auto g = loss_->generator_loss(x, out.reconstruction, out.quant.loss,
                                       model_->decoder().last_layer_weight(), step);
  opt_g_->zero_grad();
  pending_g_.scale = scaler_g_ ? scaler_g_->scale() : 0.0;
  pending_g_.values =
      backward_for_check(g.total, model_->parameters(), scaler_g_.get(), grad_clip_);
  const models::QuantizerOutput& q = out.quant;
  pending_metrics_ = {.l1 = g.l1,
                      .perceptual = g.perceptual,
                      .g_adv = g.g_adv,
                      .adaptive_weight = g.adaptive_weight,
                      .commit_loss = q.commit_loss,
                      .codebook_loss = q.codebook_loss,
                      .entropy_loss = q.entropy_loss,
                      .batch_counts = q.batch_counts,
                      .ema_counts = q.ema_counts,
                      .active_threshold = q.active_threshold,
                      .dead_threshold = q.dead_threshold};
  reconstruction_ = out.reconstruction.detach();
}

void TrainStep::discriminator_pass(const Tensor& x, int64_t step) {
  pending_d_ = {};
  if (!loss_->adversarial_active(step)) return;
  VQ_CHECK(reconstruction_.defined(), "TrainStep: the discriminator's pass needs the generator's");
  AutocastScope autocast(precision_);
  const auto d = loss_->discriminator_loss(x, reconstruction_);
  opt_d_->zero_grad();
  pending_d_.scale = scaler_d_ ? scaler_d_->scale() : 0.0;
  pending_d_.values =
      backward_for_check(d.total, loss_->discriminator().parameters(), scaler_d_.get(), 0.0);
}

TrainStep::Result TrainStep::finish() {
  VQ_CHECK(pending_g_.values.defined(), "TrainStep: finish() needs the generator's pass first");
  const bool adversarial = pending_d_.values.defined();
  const std::vector<double> read =
      (adversarial ? concat({pending_g_.values, pending_d_.values}, 0) : pending_g_.values)
          .to_vector<double>();  // the step's one host read
  const Pending g_pass = pending_g_, d_pass = pending_d_;
  Metrics metrics = std::move(pending_metrics_);
  pending_g_ = {};
  pending_d_ = {};
  pending_metrics_ = {};
  reconstruction_ = Tensor();
  Result r;
  const Checked g = decide(read.data(), scaler_g_.get());
  r.loss = g.loss;
  r.loss_scale = scaler_g_ ? scaler_g_->scale() : 0.0;
  if (!g.grads_finite) {
    opt_g_->zero_grad();
    opt_d_->zero_grad();
    r.generator_skipped = true;
    r.loss_scale_overflow = g.loss_finite && g_pass.scale > 1.0;
    if (!g.loss_finite) {
      r.nonfinite = fmt::format("the loss ({}); the step was skipped", r.loss);
    } else {
      r.nonfinite = scaler_g_ ? fmt::format(
                                    "the gradients at loss scale {}; the step was skipped and the "
                                    "scale lowered to {}",
                                    g_pass.scale, r.loss_scale)
                              : "the gradients; the step was skipped";
    }
    return r;
  }
  opt_g_->step();
  r.metrics = std::move(metrics);
  if (!adversarial) return r;
  const Checked d = decide(read.data() + 2, scaler_d_.get());
  r.d_loss = d.loss;
  if (!d.grads_finite) {
    opt_d_->zero_grad();
    r.discriminator_skipped = true;
    r.loss_scale_overflow = d.loss_finite && d_pass.scale > 1.0;
    const std::string what =
        !d.loss_finite ? fmt::format("the discriminator loss ({})", r.d_loss)
        : scaler_d_    ? fmt::format("the discriminator's gradients at loss scale {}", d_pass.scale)
                       : "the discriminator's gradients";
    r.nonfinite = what + "; the generator stepped, the discriminator did not";
    return r;
  }
  opt_d_->step();
  return r;
}

}  // namespace vq::train
