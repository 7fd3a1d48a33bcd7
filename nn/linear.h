// Linear layer: y = x W^T + b with W [out, in]; PyTorch's default initialisation, drawn from the
// Generator the caller passes.
#pragma once

#include "autograd/generator.h"
#include "nn/module.h"

namespace vq::nn {

class Linear : public UnaryModule {
 public:
  Linear(Generator& gen, int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_, bias_;
};

}  // namespace vq::nn
