#include "nn/conv2d.h"

#include "nn/init.h"

namespace vq::nn {

Conv2d::Conv2d(Generator& gen, int64_t in_channels, int64_t out_channels, int64_t kernel_size,
               int64_t stride, int64_t padding, bool bias) {
  VQ_CHECK(in_channels > 0 && out_channels > 0 && kernel_size > 0,
           "Conv2d: channels and kernel size must be positive (got {} -> {}, kernel {})",
           in_channels, out_channels, kernel_size);
  options_.stride = {stride, stride};
  options_.padding = {padding, padding};
  weight_ = register_parameter(
      "weight", Tensor::empty({out_channels, in_channels, kernel_size, kernel_size}));
  init::kaiming_uniform_default_(weight_, gen);
  if (bias) {
    bias_ = register_parameter("bias", Tensor::empty({out_channels}));
    init::bias_default_(bias_, weight_, gen);
  }
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight_, bias_, options_); }

Tensor Conv2d::forward(const Tensor& x, const Tensor& residual) {
  return conv2d(x, weight_, bias_, options_, residual);
}

}  // namespace vq::nn
