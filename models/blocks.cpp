#include "models/blocks.h"

#include <cmath>

#include "autograd/ops.h"

namespace vq::models {

std::shared_ptr<nn::GroupNorm> make_norm(int64_t channels) {
  return std::make_shared<nn::GroupNorm>(32, channels, 1e-6);
}

ResnetBlock::ResnetBlock(Generator& gen, int64_t in_channels, int64_t out_channels,
                         double dropout) {
  norm1_ = register_module("norm1", make_norm(in_channels));
  conv1_ = register_module("conv1",
                           std::make_shared<nn::Conv2d>(gen, in_channels, out_channels, 3, 1, 1));
  norm2_ = register_module("norm2", make_norm(out_channels));
  dropout_ = register_module("dropout", std::make_shared<nn::Dropout>(dropout));
  conv2_ = register_module("conv2",
                           std::make_shared<nn::Conv2d>(gen, out_channels, out_channels, 3, 1, 1));
  if (in_channels != out_channels) {
    nin_shortcut_ = register_module(
        "nin_shortcut", std::make_shared<nn::Conv2d>(gen, in_channels, out_channels, 1));
  }
}

Tensor ResnetBlock::forward(const Tensor& x) {
  Tensor h = conv1_->forward(norm1_->forward_silu_for_conv(x));
  // Dropout between norm2 and conv2 needs float32 values, unless it passes them through.
  h = dropout_->is_identity() ? norm2_->forward_silu_for_conv(h)
                              : dropout_->forward(norm2_->forward_silu(h));
  // x + conv2(h), the shortcut added where conv2 writes its result
  return conv2_->forward(h, nin_shortcut_ ? nin_shortcut_->forward(x) : x);
}

AttnBlock::AttnBlock(Generator& gen, int64_t channels) {
  norm_ = register_module("norm", make_norm(channels));
  q_ = register_module("q", std::make_shared<nn::Conv2d>(gen, channels, channels, 1));
  k_ = register_module("k", std::make_shared<nn::Conv2d>(gen, channels, channels, 1));
  v_ = register_module("v", std::make_shared<nn::Conv2d>(gen, channels, channels, 1));
  proj_out_ = register_module("proj_out", std::make_shared<nn::Conv2d>(gen, channels, channels, 1));
}

Tensor AttnBlock::forward(const Tensor& x) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), S = H * W;
  const Tensor h = norm_->forward(x);
  const Tensor q = q_->forward(h).reshape({N, C, S}).transpose(1, 2);  // [N, S, C]
  const Tensor k = k_->forward(h).reshape({N, C, S});                  // [N, C, S]
  const Tensor v = v_->forward(h).reshape({N, C, S});                  // [N, C, S]
  // weights[n, i, j]: how much position i attends to position j
  const Tensor weights = softmax(mul(bmm(q, k), 1.0 / std::sqrt(static_cast<double>(C))), 2);
  const Tensor attended = bmm(v, weights.transpose(1, 2)).reshape({N, C, H, W});
  return proj_out_->forward(attended, x);  // x + proj_out(attended)
}

Downsample::Downsample(Generator& gen, int64_t channels) {
  conv_ = register_module("conv", std::make_shared<nn::Conv2d>(gen, channels, channels, 3, 2, 0));
}

// NOTE: taming pads only right and bottom, so the stride-2 windows start at pixel 0.
Tensor Downsample::forward(const Tensor& x) { return conv_->forward(pad(x, {0, 1, 0, 1})); }

Upsample::Upsample(Generator& gen, int64_t channels) {
  conv_ = register_module("conv", std::make_shared<nn::Conv2d>(gen, channels, channels, 3, 1, 1));
}

Tensor Upsample::forward(const Tensor& x) { return conv_->forward(upsample_nearest2d(x, 2)); }

}  // namespace vq::models
