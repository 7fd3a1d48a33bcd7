#include "nn/module.h"

#include <unordered_map>
#include <unordered_set>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace vq::nn {

namespace {

void check_name(const std::string& name, const char* kind) {
  VQ_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "register {}: the name '{}' must be non-empty and contain no '.'", kind, name);
}

}  // namespace

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_name(name, "parameter");
  VQ_CHECK(value.defined(), "register parameter: '{}' is undefined", name);
  value.requires_grad_(true);
  parameters_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_name(name, "buffer");
  VQ_CHECK(value.defined(), "register buffer: '{}' is undefined", name);
  buffers_.emplace_back(name, value);
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_name(name, "module");
  VQ_CHECK(module != nullptr, "register module: '{}' is null", name);
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool parameters, NamedTensors& out) const {
  for (const auto& [name, t] : parameters ? parameters_ : buffers_)
    out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", parameters, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_children() const {
  std::vector<std::pair<std::string, Module*>> out;
  for (const auto& [name, child] : children_) out.emplace_back(name, child.get());
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::to(Device device) {
  for (auto& [name, t] : named_parameters()) t.set_data(t.detach().to(device));
  for (auto& [name, t] : named_buffers()) t.set_data(t.to(device));
}

void Module::to(DType dtype) {
  VQ_CHECK(is_floating(dtype), "Module::to: {} is not a floating dtype", dtype_name(dtype));
  for (auto& [name, t] : named_parameters()) t.set_data(t.detach().to(dtype));
  for (auto& [name, t] : named_buffers()) {
    if (is_floating(t.dtype())) t.set_data(t.to(dtype));
  }
}

void Module::requires_grad_(bool on) {
  for (auto& [name, t] : named_parameters()) t.requires_grad_(on);
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.set_grad(Tensor());
}

NamedTensors Module::state_dict() const {
  NamedTensors out = named_parameters();
  for (auto& entry : named_buffers()) out.push_back(entry);
  return out;
}

void Module::load_state_dict(const NamedTensors& state, bool strict) {
  std::unordered_map<std::string, const Tensor*> given;
  for (const auto& [name, t] : state) given[name] = &t;
  std::vector<std::string> missing, wrong_shape;
  std::unordered_set<std::string> used;
  NamedTensors own = state_dict();
  for (const auto& [name, t] : own) {
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
      continue;
    }
    used.insert(name);
    if (it->second->shape() != t.shape()) {
      wrong_shape.push_back(fmt::format("{} (checkpoint {}, model {})", name,
                                        shape_str(it->second->shape()), shape_str(t.shape())));
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : state) {
    if (!used.count(name)) unexpected.push_back(name);
  }
  const bool fail = !wrong_shape.empty() || (strict && (!missing.empty() || !unexpected.empty()));
  if (fail) {
    std::string msg = "load_state_dict: the state does not fit the model";
    auto list = [&msg](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      msg += fmt::format("\n  {} ({}): ", what, names.size());
      for (size_t i = 0; i < names.size() && i < 20; ++i) msg += (i ? ", " : "") + names[i];
      if (names.size() > 20) msg += ", ...";
    };
    list("wrong shape", wrong_shape);
    if (strict) {
      list("missing keys", missing);
      list("unexpected keys", unexpected);
    }
    throw Error(msg);
  }
  NoGradGuard no_grad;
  for (auto& [name, t] : own) {
    auto it = given.find(name);
    if (it != given.end()) t.copy_(*it->second);
  }
}

}  // namespace vq::nn
