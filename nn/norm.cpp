#include "nn/norm.h"

#include "autograd/node.h"
#include "autograd/ops.h"

namespace vq::nn {

GroupNorm::GroupNorm(int64_t num_groups, int64_t num_channels, double eps, bool affine)
    : num_groups_(num_groups), eps_(eps) {
  VQ_CHECK(num_groups > 0 && num_channels % num_groups == 0,
           "GroupNorm: {} channels cannot be split into {} groups", num_channels, num_groups);
  if (affine) {
    weight_ = register_parameter("weight", ones({num_channels}));
    bias_ = register_parameter("bias", zeros({num_channels}));
  }
}

Tensor GroupNorm::forward(const Tensor& x) {
  return group_norm(x, num_groups_, weight_, bias_, eps_);
}

BatchNorm2d::BatchNorm2d(int64_t num_features, double momentum, double eps)
    : momentum_(momentum), eps_(eps) {
  weight_ = register_parameter("weight", ones({num_features}));
  bias_ = register_parameter("bias", zeros({num_features}));
  running_mean_ = register_buffer("running_mean", zeros({num_features}));
  running_var_ = register_buffer("running_var", ones({num_features}));
  num_batches_tracked_ = register_buffer("num_batches_tracked", zeros({}, DType::Int64));
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  if (is_training()) {
    NoGradGuard no_grad;
    num_batches_tracked_.copy_(add(num_batches_tracked_, ones({}, DType::Int64, x.device())));
  }
  return batch_norm(x, running_mean_, running_var_, weight_, bias_, is_training(), momentum_, eps_);
}

}  // namespace vq::nn
