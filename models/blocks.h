// The building blocks of taming-transformers' encoder and decoder, with its parameter names:
//   ResnetBlock: norm1, conv1, norm2, dropout, conv2 (+ nin_shortcut, a 1x1 conv, when the
//                channel count changes); out = x + conv2(drop(silu(norm2(conv1(silu(norm1(x)))))))
//   AttnBlock:   single-head self-attention over the H*W positions: norm, q, k, v, proj_out
//                (1x1 convs); out = x + proj_out(v softmax(q^T k / sqrt(C)))
//   Downsample:  pad right/bottom by 1, 3x3 conv with stride 2 (halves H and W)
//   Upsample:    nearest x2, 3x3 conv
// GroupNorm uses 32 groups and eps 1e-6, as in taming. Every block draws its convolutions' initial
// weights from the Generator it is given, in construction order.
#pragma once

#include <memory>

#include "nn/conv2d.h"
#include "nn/dropout.h"
#include "nn/norm.h"

namespace vq::models {

std::shared_ptr<nn::GroupNorm> make_norm(int64_t channels);

class ResnetBlock : public nn::UnaryModule {
 public:
  ResnetBlock(Generator& gen, int64_t in_channels, int64_t out_channels, double dropout);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<nn::GroupNorm> norm1_, norm2_;
  std::shared_ptr<nn::Conv2d> conv1_, conv2_, nin_shortcut_;
  std::shared_ptr<nn::Dropout> dropout_;
};

class AttnBlock : public nn::UnaryModule {
 public:
  AttnBlock(Generator& gen, int64_t channels);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<nn::GroupNorm> norm_;
  std::shared_ptr<nn::Conv2d> q_, k_, v_, proj_out_;
};

class Downsample : public nn::UnaryModule {
 public:
  Downsample(Generator& gen, int64_t channels);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<nn::Conv2d> conv_;
};

class Upsample : public nn::UnaryModule {
 public:
  Upsample(Generator& gen, int64_t channels);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<nn::Conv2d> conv_;
};

}  // namespace vq::models
