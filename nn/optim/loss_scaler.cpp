#include "nn/optim/loss_scaler.h"

#include <cmath>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace vq::nn {

LossScaler::LossScaler(const LossScalerOptions& options)
    : options_(options), scale_(options.init_scale) {
  VQ_CHECK(std::isfinite(options.init_scale) && options.init_scale > 0,
           "LossScaler: init_scale must be finite and positive, got {}", options.init_scale);
  VQ_CHECK(options.growth_factor > 1 && options.backoff_factor > 0 && options.backoff_factor < 1,
           "LossScaler: growth_factor must be above 1 and backoff_factor in (0, 1), got {} and {}",
           options.growth_factor, options.backoff_factor);
  VQ_CHECK(options.growth_interval > 0, "LossScaler: growth_interval must be positive, got {}",
           options.growth_interval);
}

Tensor LossScaler::scale_loss(const Tensor& loss) const { return mul(loss, scale_); }

void LossScaler::unscale(const std::vector<Tensor>& params) const {
  NoGradGuard no_grad;
  // Powers of two (as the scale always is with the default factors) divide exactly.
  const double inverse = 1.0 / scale_;
  for (const Tensor& p : params) {
    if (p.grad().defined()) p.grad().mul_(inverse);
  }
}

void LossScaler::update(bool overflowed) {
  if (overflowed) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ == options_.growth_interval) {
    // A scale that would overflow float32 itself stays where it is (PyTorch does the same).
    if (std::isfinite(static_cast<float>(scale_ * options_.growth_factor)))
      scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
}

NamedTensors LossScaler::state_dict() const {
  return {{"scale", full({}, scale_, DType::Float64)},
          {"growth_tracker", full({}, static_cast<double>(growth_tracker_), DType::Float64)}};
}

void LossScaler::load_state_dict(const NamedTensors& state) {
  double scale = 0, tracker = -1;
  bool has_scale = false, has_tracker = false;
  for (const auto& [name, t] : state) {
    VQ_CHECK(t.numel() == 1, "loss scaler state: '{}' must hold one value, has shape {}", name,
             shape_str(t.shape()));
    const double v = t.to(DType::Float64).cpu().item();
    if (name == "scale") {
      scale = v;
      has_scale = true;
    } else if (name == "growth_tracker") {
      tracker = v;
      has_tracker = true;
    }
  }
  VQ_CHECK(has_scale && has_tracker, "loss scaler state: missing {}",
           has_scale ? "'growth_tracker'" : "'scale'");
  VQ_CHECK(std::isfinite(scale) && scale > 0, "loss scaler state: scale {} is not positive", scale);
  VQ_CHECK(tracker >= 0 && tracker < static_cast<double>(options_.growth_interval) &&
               tracker == std::floor(tracker),
           "loss scaler state: growth_tracker {} is not a count below the growth interval {}",
           tracker, options_.growth_interval);
  scale_ = scale;
  growth_tracker_ = static_cast<int64_t>(tracker);
}

}  // namespace vq::nn
