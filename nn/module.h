// Module: the base of every layer and model. It registers parameters, buffers and child modules
// under names, so that the dotted names of a whole model come out exactly like PyTorch's
// (`encoder.down.0.block.1.conv1.weight`), and state dicts load across the two.
//
// Parameters and buffers are Tensor handles: a layer keeps its own handle (e.g. `weight_`) and the
// registry holds the same tensor, so moving a module to a device or loading a state dict updates
// what the layer sees.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace vq::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  NamedTensors named_parameters() const;  // recursive, dotted names, registration order
  NamedTensors named_buffers() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Module*>> named_children() const;
  int64_t num_parameters() const;

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void to(Device device);
  void to(DType dtype);  // floating parameters and buffers only (float64 for gradchecks)
  void zero_grad();
  // Switches requires_grad on every parameter (frozen networks, or the discriminator while the
  // generator steps, so no gradient is computed for it).
  void requires_grad_(bool on);

  // Parameters and buffers under their dotted names (values share storage with the module).
  NamedTensors state_dict() const;
  // Copies values in (converting dtype, crossing devices). With strict, missing and unexpected
  // keys are errors; wrong shapes always are. The error lists every problem at once.
  void load_state_dict(const NamedTensors& state, bool strict = true);

 protected:
  // Registers a parameter (requires_grad is switched on) and returns the same tensor.
  Tensor register_parameter(const std::string& name, Tensor value);
  Tensor register_buffer(const std::string& name, Tensor value);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void collect(const std::string& prefix, bool parameters, NamedTensors& out) const;

  NamedTensors parameters_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// A module with one input and one output, the kind Sequential chains.
class UnaryModule : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

}  // namespace vq::nn
