// Dynamic loss scaling for float16 training, with PyTorch's GradScaler semantics.
//
// float16 keeps 5 exponent bits: a gradient below 2^-24 becomes zero and one above 65504
// becomes inf. Gradients of a loss near 1 are mostly tiny, so the loss is multiplied by `scale`
// before backward (every gradient grows by the same factor and stays representable) and the
// gradients are divided by it again before the optimizer sees them. The right scale is found as
// training goes: a step whose gradients overflow (inf/NaN) is skipped and the scale is multiplied
// by backoff_factor; after growth_interval clean steps in a row it is multiplied by
// growth_factor. bfloat16 has float32's exponent range and needs none of this.
#pragma once

#include <string>
#include <vector>

#include "nn/module.h"

namespace vq::nn {

struct LossScalerOptions {
  double init_scale = 65536.0;  // 2^16, PyTorch's default
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class LossScaler {
 public:
  explicit LossScaler(const LossScalerOptions& options = {});

  double scale() const { return scale_; }
  // Clean steps since the last change of the scale.
  int64_t growth_tracker() const { return growth_tracker_; }

  // loss * scale: call backward on this instead of the loss.
  Tensor scale_loss(const Tensor& loss) const;
  // Divides the gradient of every parameter by the scale, so the optimizer (and gradient
  // clipping) see the true gradients. Non-finite values stay non-finite.
  void unscale(const std::vector<Tensor>& params) const;
  // Once per step, after the caller has checked the unscaled gradients: an overflow lowers the
  // scale and restarts the count; a clean step counts towards growth.
  void update(bool overflowed);

  // {"scale", "growth_tracker"} as float64 scalars, for the run's .last checkpoint.
  NamedTensors state_dict() const;
  // Throws naming what is missing or invalid; nothing changes then.
  void load_state_dict(const NamedTensors& state);

 private:
  LossScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
};

}  // namespace vq::nn
