#include "nn/optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>
#include <unordered_map>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/switches.h"

namespace vq::nn {

Optimizer::Optimizer(NamedTensors params, double lr)
    : lr_(lr), params_(std::move(params)), steps_(params_.size(), 0) {
  VQ_CHECK(lr >= 0.0, "optimizer: learning rate must be >= 0, got {}", lr);
  for (const auto& [name, p] : params_) {
    VQ_CHECK(p.requires_grad(), "optimizer: parameter '{}' does not require grad", name);
  }
}

void Optimizer::step() {
  NoGradGuard no_grad;
  std::vector<Update> updates;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    updates.push_back({i, p, g.contiguous(), ++steps_[i]});
  }
  apply(updates);
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) p.set_grad(Tensor());
}

bool Optimizer::has_slot(const std::string& name, size_t i) const {
  for (const auto& [slot_name, tensors] : slots_) {
    if (slot_name == name) return tensors[i].defined();
  }
  return false;
}

const Tensor& Optimizer::slot(const std::string& name, size_t i) {
  auto it =
      std::find_if(slots_.begin(), slots_.end(), [&](const auto& s) { return s.first == name; });
  if (it == slots_.end()) {
    slots_.emplace_back(name, std::vector<Tensor>(params_.size()));
    it = slots_.end() - 1;
  }
  Tensor& t = it->second[i];
  if (!t.defined()) t = zeros_like(params_[i].second.detach());
  return t;
}

NamedTensors Optimizer::state_dict() const {
  NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (steps_[i] > 0)
      out.emplace_back("step." + params_[i].first,
                       full({}, static_cast<double>(steps_[i]), DType::Int64));
  }
  for (const auto& [slot_name, tensors] : slots_) {
    for (size_t i = 0; i < params_.size(); ++i) {
      if (tensors[i].defined()) out.emplace_back(slot_name + "." + params_[i].first, tensors[i]);
    }
  }
  return out;
}

void Optimizer::load_state_dict(const NamedTensors& state) {
  std::unordered_map<std::string, Tensor> given(state.begin(), state.end());
  std::vector<int64_t> steps(params_.size(), 0);
  std::vector<std::pair<std::string, std::vector<Tensor>>> slots;
  std::vector<std::string> problems;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto it = given.find("step." + params_[i].first);
    if (it != given.end()) {
      steps[i] = static_cast<int64_t>(it->second.item());
      given.erase(it);
    }
  }
  for (auto& [key, value] : given) {
    const size_t dot = key.find('.');
    const std::string slot_name = key.substr(0, dot),
                      param = dot == std::string::npos ? "" : key.substr(dot + 1);
    auto p = std::find_if(params_.begin(), params_.end(),
                          [&](const auto& e) { return e.first == param; });
    if (p == params_.end()) {
      problems.push_back(fmt::format("'{}' names no parameter of this optimizer", key));
      continue;
    }
    if (value.shape() != p->second.shape()) {
      problems.push_back(fmt::format("'{}' has shape {}, the parameter {}", key,
                                     shape_str(value.shape()), shape_str(p->second.shape())));
      continue;
    }
    auto s = std::find_if(slots.begin(), slots.end(),
                          [&](const auto& e) { return e.first == slot_name; });
    if (s == slots.end()) {
      slots.emplace_back(slot_name, std::vector<Tensor>(params_.size()));
      s = slots.end() - 1;
    }
    s->second[p - params_.begin()] = value.to(p->second.dtype()).to(p->second.device()).clone();
  }
  VQ_CHECK(problems.empty(), "optimizer load_state_dict: {}", fmt::join(problems, "; "));
  steps_ = steps;
  slots_ = std::move(slots);
}

SGD::SGD(NamedTensors params, const SgdOptions& options)
    : Optimizer(std::move(params), options.lr), options_(options) {
  VQ_CHECK(options.momentum >= 0.0, "SGD: momentum must be >= 0, got {}", options.momentum);
  VQ_CHECK(!options.nesterov || (options.momentum > 0.0 && options.dampening == 0.0),
           "SGD: Nesterov momentum needs momentum > 0 and no dampening");
}

void SGD::apply(const std::vector<Update>& updates) {
  for (const auto& [i, param, grad, step] : updates) {
    // d = g + wd p;  buf = d (first step) or momentum buf + (1 - dampening) d;
    // d = d + momentum buf (Nesterov) or buf;  p -= lr d
    Tensor d = options_.weight_decay != 0.0 ? add(grad, mul(param, options_.weight_decay)) : grad;
    if (options_.momentum != 0.0) {
      const bool fresh = !has_slot("momentum_buffer", i);
      const Tensor& buf = slot("momentum_buffer", i);
      if (fresh) {
        buf.copy_(d);
      } else {
        buf.mul_(options_.momentum).add_(d, 1.0 - options_.dampening);
      }
      d = options_.nesterov ? add(d, mul(buf, options_.momentum)) : buf;
    }
    param.add_(d, -lr_);
  }
}

Adam::Adam(NamedTensors params, const AdamOptions& options)
    : Optimizer(std::move(params), options.lr), options_(options) {
  VQ_CHECK(
      options.beta1 >= 0.0 && options.beta1 < 1.0 && options.beta2 >= 0.0 && options.beta2 < 1.0,
      "Adam: betas must be in [0, 1), got ({}, {})", options.beta1, options.beta2);
  VQ_CHECK(options.eps > 0.0, "Adam: eps must be > 0, got {}", options.eps);
}

void Adam::apply(const std::vector<Update>& updates) {
  auto hyper = [&](int64_t step) {
    return AdamStep{lr_,
                    options_.beta1,
                    options_.beta2,
                    options_.eps,
                    options_.weight_decay,
                    step,
                    options_.decoupled_weight_decay};
  };
  static const bool multi_tensor = env_switch("VQ_MULTI_TENSOR_ADAM", true);
  if (!multi_tensor) {  // one update per parameter, for timing both on a GPU (docs/gpu.md)
    for (const Update& u : updates) {
      adam_step_(u.param, u.grad, slot("exp_avg", u.i), slot("exp_avg_sq", u.i), hyper(u.step));
    }
    return;
  }
  // Groups of one step count, device and dtype, each in parameter order.
  std::vector<std::pair<const Update*, std::vector<AdamTensors>>> groups;
  for (const Update& u : updates) {
    auto same = [&](const auto& g) {
      const Update& first = *g.first;
      return first.step == u.step && first.param.device() == u.param.device() &&
             first.param.dtype() == u.param.dtype();
    };
    auto it = std::find_if(groups.begin(), groups.end(), same);
    if (it == groups.end()) it = groups.insert(groups.end(), {&u, {}});
    it->second.push_back({u.param, u.grad, slot("exp_avg", u.i), slot("exp_avg_sq", u.i)});
  }
  for (const auto& [first, tensors] : groups) adam_step_(tensors, hyper(first->step));
}

namespace {

std::vector<Tensor> defined_of(const std::vector<Tensor>& tensors, bool of_grads) {
  std::vector<Tensor> out;
  for (const Tensor& t : tensors) {
    const Tensor& x = of_grads ? t.grad() : t;
    if (x.defined()) out.push_back(x);
  }
  return out;
}

// The sum of squares of all tensors: one squared_norm and one host read per device they are on
// (a model's state may hold CPU tensors beside its GPU ones, e.g. a loss scaler's).
double total_squared_norm(const std::vector<Tensor>& xs) {
  std::vector<Device> devices;
  for (const Tensor& x : xs) {
    if (std::find(devices.begin(), devices.end(), x.device()) == devices.end()) {
      devices.push_back(x.device());
    }
  }
  double total = 0.0;
  for (const Device& d : devices) {
    std::vector<Tensor> on_d;
    std::copy_if(xs.begin(), xs.end(), std::back_inserter(on_d),
                 [&](const Tensor& x) { return x.device() == d; });
    total += squared_norm(on_d).item();
  }
  return total;
}

}  // namespace

bool all_finite(const std::vector<Tensor>& tensors, bool of_grads) {
  NoGradGuard no_grad;
  const std::vector<Tensor> xs = defined_of(tensors, of_grads);
  // One pass and one host read for all tensors (per device). NOTE: squares are summed in double,
  // so only a float64 value beyond ~1e154 could overflow a finite sum (float32's largest square
  // is 1e77).
  return xs.empty() || std::isfinite(total_squared_norm(xs));
}

Tensor clip_grad_norm_on_device_(const std::vector<Tensor>& params, double max_norm) {
  NoGradGuard no_grad;
  const std::vector<Tensor> grads = defined_of(params, true);
  if (grads.empty()) return Tensor();
  const Tensor squared = squared_norm(grads);
  if (max_norm <= 0) return squared;
  // coef = min(1, max_norm / (norm + 1e-6)), and 1 where the norm is not finite (the caller
  // skips that step anyway): gradients are scaled only when they are too long.
  const Tensor norm = sqrt(squared);
  const Tensor finite = eq(mul(norm, 0.0), zeros({}, norm.dtype(), norm.device()));
  const Tensor coef = where(finite, clamp(mul(pow(add(norm, 1e-6), -1.0), max_norm), 0.0, 1.0),
                            ones({}, norm.dtype(), norm.device()))
                          .to(grads.front().dtype());  // once, not once per gradient
  for (const Tensor& g : grads) g.mul_(coef);
  return squared;
}

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm) {
  const Tensor squared = clip_grad_norm_on_device_(params, max_norm);
  return squared.defined() ? std::sqrt(squared.item()) : 0.0;
}

}  // namespace vq::nn
