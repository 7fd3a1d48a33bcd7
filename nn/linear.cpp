#include "nn/linear.h"

#include "autograd/ops.h"
#include "nn/init.h"

namespace vq::nn {

Linear::Linear(Generator& gen, int64_t in_features, int64_t out_features, bool bias) {
  VQ_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive (got {} -> {})",
           in_features, out_features);
  weight_ = register_parameter("weight", Tensor::empty({out_features, in_features}));
  init::kaiming_uniform_default_(weight_, gen);
  if (bias) {
    bias_ = register_parameter("bias", Tensor::empty({out_features}));
    init::bias_default_(bias_, weight_, gen);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight_, bias_); }

}  // namespace vq::nn
