// Taming-transformers' Encoder and Decoder. Size letters: N batch, C channels, H W resolution.
//
// Encoder: conv_in; per level l, num_res_blocks ResnetBlocks (ch*ch_mult[l] channels), an
// AttnBlock after each where the level's resolution is in attn_resolutions, and a Downsample
// except after the last level; mid = block_1, attn_1, block_2; norm_out, SiLU, conv_out to
// z_channels.  [N, in, R, R] -> [N, z, R/2^(L-1), R/2^(L-1)]
// Decoder mirrors it with num_res_blocks + 1 blocks per level and Upsample instead of Downsample;
// up[l] is the level at the same resolution as the encoder's down[l]. Both draw their initial
// weights from the Generator they are given, in construction order.
#pragma once

#include <memory>

#include "models/blocks.h"
#include "models/model_config.h"
#include "nn/container.h"

namespace vq::models {

// One resolution level: its ResnetBlocks, their AttnBlocks, and the resampling that follows
// (registered as "downsample" or "upsample"; absent at the outermost level).
class Level : public nn::Module {
 public:
  Level(Generator& gen, int64_t in_channels, int64_t out_channels, int64_t blocks, bool attention,
        double dropout);
  void set_resample(const char* name, std::shared_ptr<nn::UnaryModule> resample);
  Tensor forward(const Tensor& x) const;  // blocks (+attention), then the resampling

 private:
  std::shared_ptr<nn::ModuleList> block_, attn_;
  std::shared_ptr<nn::UnaryModule> resample_;
};

// The middle of both networks: block_1, attn_1, block_2 at constant width.
class MidBlock : public nn::Module {
 public:
  MidBlock(Generator& gen, int64_t channels, double dropout);
  Tensor forward(const Tensor& x) const;

 private:
  std::shared_ptr<ResnetBlock> block_1_, block_2_;
  std::shared_ptr<AttnBlock> attn_1_;
};

class Encoder : public nn::UnaryModule {
 public:
  Encoder(const ModelConfig& config, Generator& gen);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<nn::Conv2d> conv_in_, conv_out_;
  std::shared_ptr<nn::ModuleList> down_;
  std::shared_ptr<MidBlock> mid_;
  std::shared_ptr<nn::GroupNorm> norm_out_;
};

class Decoder : public nn::UnaryModule {
 public:
  Decoder(const ModelConfig& config, Generator& gen);
  Tensor forward(const Tensor& z) override;
  // The weight of the final conv: the "last layer" of taming's adaptive adversarial weight.
  const Tensor& last_layer_weight() const { return conv_out_->weight(); }

 private:
  std::shared_ptr<nn::Conv2d> conv_in_, conv_out_;
  std::shared_ptr<MidBlock> mid_;
  std::shared_ptr<nn::ModuleList> up_;
  std::shared_ptr<nn::GroupNorm> norm_out_;
};

}  // namespace vq::models
