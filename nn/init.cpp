#include "nn/init.h"

#include <cmath>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace vq::nn::init {

void uniform_(const Tensor& t, double lo, double hi, Generator& gen) {
  NoGradGuard no_grad;
  t.copy_(uniform(t.shape(), lo, hi, gen, t.dtype(), t.device()));
}

void normal_(const Tensor& t, double mean, double std, Generator& gen) {
  NoGradGuard no_grad;
  t.copy_(add(mul(randn(t.shape(), gen, t.dtype(), t.device()), std), mean));
}

void constant_(const Tensor& t, double value) {
  NoGradGuard no_grad;
  t.fill_(value);
}

int64_t fan_in(const Tensor& weight) {
  VQ_CHECK(weight.dim() >= 2, "fan_in: a weight needs at least 2 dims, got {}",
           shape_str(weight.shape()));
  return weight.numel() / weight.size(0);
}

void kaiming_uniform_default_(const Tensor& weight, Generator& gen) {
  // gain = sqrt(2 / (1 + a^2)) with a = sqrt(5); bound = gain * sqrt(3 / fan_in) = 1/sqrt(fan_in)
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in(weight)));
  uniform_(weight, -bound, bound, gen);
}

void bias_default_(const Tensor& bias, const Tensor& weight, Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in(weight)));
  uniform_(bias, -bound, bound, gen);
}

}  // namespace vq::nn::init
