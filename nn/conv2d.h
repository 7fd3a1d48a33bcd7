// Conv2d layer: weight [out, in, k, k], optional bias [out]; PyTorch's default initialisation,
// drawn from the Generator the caller passes (never the process-wide one), so a model's seed alone
// decides its weights.
#pragma once

#include "autograd/generator.h"
#include "autograd/ops.h"
#include "nn/module.h"

namespace vq::nn {

class Conv2d : public UnaryModule {
 public:
  Conv2d(Generator& gen, int64_t in_channels, int64_t out_channels, int64_t kernel_size,
         int64_t stride = 1, int64_t padding = 0, bool bias = true);
  Tensor forward(const Tensor& x) override;
  // residual + forward(x) in one pass (a ResBlock's shortcut; conv2d's residual).
  Tensor forward(const Tensor& x, const Tensor& residual);

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias

 private:
  Tensor weight_, bias_;
  Conv2dOptions options_;
};

}  // namespace vq::nn
