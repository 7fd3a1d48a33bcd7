// Normalisation layers: GroupNorm (weight/bias per channel) and BatchNorm2d (plus running
// statistics and PyTorch's num_batches_tracked buffer, so state dicts match PyTorch's).
#pragma once

#include "nn/module.h"

namespace vq::nn {

class GroupNorm : public UnaryModule {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) override;
  // silu(forward(x)) in one pass (group_norm_silu: the normalised values are never stored).
  // VQ_FUSED_GROUP_NORM_SILU=0 runs the two ops instead, for timing both on a GPU (docs/gpu.md).
  Tensor forward_silu(const Tensor& x);
  // forward_silu(x) for a convolution to read: group_norm_silu_for_conv (under autocast on CUDA
  // the result is the convolution's bfloat16 channels-last operand, which only conv2d takes).
  Tensor forward_silu_for_conv(const Tensor& x);

 private:
  int64_t num_groups_;
  double eps_;
  Tensor weight_, bias_;
};

class BatchNorm2d : public UnaryModule {
 public:
  explicit BatchNorm2d(int64_t num_features, double momentum = 0.1, double eps = 1e-5);
  Tensor forward(const Tensor& x) override;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  const Tensor& running_mean() const { return running_mean_; }
  const Tensor& running_var() const { return running_var_; }

 private:
  Tensor synchronized_forward(const Tensor& x);
  double momentum_, eps_;
  Tensor weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
};

}  // namespace vq::nn
