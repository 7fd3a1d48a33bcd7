#include "nn/norm.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/switches.h"
#include "nn/dist/communicator.h"

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

namespace {

bool fused_group_norm_silu() {
  static const bool fused = env_switch("VQ_FUSED_GROUP_NORM_SILU", true);
  return fused;
}

}  // namespace

Tensor GroupNorm::forward_silu(const Tensor& x) {
  return fused_group_norm_silu() ? group_norm_silu(x, num_groups_, weight_, bias_, eps_)
                                 : silu(forward(x));
}

Tensor GroupNorm::forward_silu_for_conv(const Tensor& x) {
  return fused_group_norm_silu() ? group_norm_silu_for_conv(x, num_groups_, weight_, bias_, eps_)
                                 : silu(forward(x));
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
  if (is_training() && dist::distributed()) return synchronized_forward(x);
  return batch_norm(x, running_mean_, running_var_, weight_, bias_, is_training(), momentum_, eps_);
}

// SyncBatchNorm: under data parallelism the batch statistics are those of the global batch, as
// one process would compute them. The per-channel sums travel through a differentiable
// all-reduce, so each rank's gradient also accounts for its inputs' share of the statistics.
Tensor BatchNorm2d::synchronized_forward(const Tensor& x) {
  VQ_CHECK(x.dim() == 4, "BatchNorm2d: expected [N, C, H, W], got {}", shape_str(x.shape()));
  const int64_t C = x.size(1);
  const double count =
      static_cast<double>(x.size(0) * x.size(2) * x.size(3)) * dist::world().size();
  const Tensor mean_ = mul(dist::all_reduce_sum_with_grad(sum(x, {0, 2, 3}, true)), 1.0 / count);
  const Tensor centred = sub(x, mean_);
  const Tensor var_ =
      mul(dist::all_reduce_sum_with_grad(sum(mul(centred, centred), {0, 2, 3}, true)), 1.0 / count);
  {
    // Running statistics as batch_norm keeps them: the unbiased variance.
    NoGradGuard no_grad;
    running_mean_.mul_(1.0 - momentum_).add_(mean_.reshape({C}), momentum_);
    running_var_.mul_(1.0 - momentum_).add_(var_.reshape({C}), momentum_ * count / (count - 1));
  }
  const Tensor normalised = div(centred, sqrt(add(var_, eps_)));
  return add(mul(normalised, weight_.view({1, C, 1, 1})), bias_.view({1, C, 1, 1}));
}

}  // namespace vq::nn
