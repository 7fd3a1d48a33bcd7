// Optimizers: SGD (momentum, Nesterov) and Adam/AdamW with PyTorch's update formulas, gradient
// clipping by global norm. Parameters are given with their names, so the optimizer state saves
// under readable keys ("exp_avg.encoder.conv_in.weight", "step.encoder.conv_in.weight") and a
// resumed run continues exactly.
#pragma once

#include <string>
#include <vector>

#include "nn/module.h"

namespace vq::nn {

class Optimizer {
 public:
  Optimizer(NamedTensors params, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Updates every parameter that has a gradient (others are skipped, as in PyTorch).
  void step();
  void zero_grad();
  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  const NamedTensors& params() const { return params_; }

  NamedTensors state_dict() const;
  // Throws listing missing or mis-shaped entries; nothing is changed then.
  void load_state_dict(const NamedTensors& state);

 protected:
  // Parameter i with its gradient, its per-parameter step count already advanced.
  struct Update {
    size_t i;
    Tensor param, grad;
    int64_t step;
  };
  // One step's updates of every parameter that has a gradient, in parameter order.
  virtual void apply(const std::vector<Update>& updates) = 0;
  // Per-parameter state tensor `slot` for parameter i, created as zeros on first use.
  const Tensor& slot(const std::string& name, size_t i);
  bool has_slot(const std::string& name, size_t i) const;
  double lr_;

 private:
  NamedTensors params_;
  std::vector<int64_t> steps_;
  std::vector<std::pair<std::string, std::vector<Tensor>>> slots_;
};

struct SgdOptions {
  double lr = 1e-2, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(NamedTensors params, const SgdOptions& options);

 protected:
  void apply(const std::vector<Update>& updates) override;

 private:
  SgdOptions options_;
};

struct AdamOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // true: AdamW
};

// All parameters that share a step count, device and dtype (normally all) update in one
// multi-tensor adam_step_.
class Adam : public Optimizer {
 public:
  Adam(NamedTensors params, const AdamOptions& options);

 protected:
  void apply(const std::vector<Update>& updates) override;

 private:
  AdamOptions options_;
};

// Scales all gradients so their global L2 norm is at most max_norm; returns the norm before
// clipping (non-finite when a gradient is, in which case nothing is scaled).
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm);
// The same without a host read, for a training step that reads once: the squared norm before
// clipping as a float64 scalar on the gradients' device (one device; undefined when no parameter
// has a gradient). max_norm <= 0 measures without clipping.
Tensor clip_grad_norm_on_device_(const std::vector<Tensor>& params, double max_norm);
// True when every element of the given tensors (or of their gradients, with `of_grads`) is
// finite: a pass or two over each, cheap enough for every training step.
bool all_finite(const std::vector<Tensor>& tensors, bool of_grads = false);

}  // namespace vq::nn
