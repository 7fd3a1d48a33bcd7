// Containers: Sequential chains unary modules (children named "0", "1", ... as in PyTorch);
// ModuleList holds modules of any kind under the same numbering.
#pragma once

#include <memory>
#include <vector>

#include "nn/module.h"

namespace vq::nn {

class Sequential : public UnaryModule {
 public:
  Sequential() = default;
  // Appends a module named by its position.
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    modules_.push_back(register_module(std::to_string(modules_.size()), module));
    return module;
  }
  // Appends a module under an explicit name (e.g. torchvision's "4" for the 5th layer of VGG).
  template <class M>
  std::shared_ptr<M> push_back(const std::string& name, std::shared_ptr<M> module) {
    modules_.push_back(register_module(name, module));
    return module;
  }
  Tensor forward(const Tensor& x) override;
  size_t size() const { return modules_.size(); }

 private:
  std::vector<std::shared_ptr<UnaryModule>> modules_;
};

class ModuleList : public Module {
 public:
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    modules_.push_back(register_module(std::to_string(modules_.size()), module));
    return module;
  }
  size_t size() const { return modules_.size(); }
  // The i-th module as type M; throws if it is another kind.
  template <class M>
  M& at(size_t i) const {
    VQ_CHECK(i < modules_.size(), "ModuleList: index {} out of range (size {})", i,
             modules_.size());
    auto* m = dynamic_cast<M*>(modules_[i].get());
    VQ_CHECK(m != nullptr, "ModuleList: module {} is not of the requested type", i);
    return *m;
  }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

}  // namespace vq::nn
