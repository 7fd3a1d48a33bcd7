#include "models/encoder.h"

#include <algorithm>

#include "autograd/ops.h"

namespace vq::models {

namespace {

bool has_attention(const ModelConfig& c, int64_t resolution) {
  return std::find(c.attn_resolutions.begin(), c.attn_resolutions.end(), resolution) !=
         c.attn_resolutions.end();
}

}  // namespace

Level::Level(Generator& gen, int64_t in_channels, int64_t out_channels, int64_t blocks,
             bool attention, double dropout) {
  block_ = register_module("block", std::make_shared<nn::ModuleList>());
  attn_ = register_module("attn", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < blocks; ++i) {
    block_->push_back(std::make_shared<ResnetBlock>(gen, i == 0 ? in_channels : out_channels,
                                                    out_channels, dropout));
    if (attention) attn_->push_back(std::make_shared<AttnBlock>(gen, out_channels));
  }
}

void Level::set_resample(const char* name, std::shared_ptr<nn::UnaryModule> resample) {
  resample_ = register_module(name, std::move(resample));
}

Tensor Level::forward(const Tensor& x) const {
  Tensor h = x;
  for (size_t i = 0; i < block_->size(); ++i) {
    h = block_->at<ResnetBlock>(i).forward(h);
    if (attn_->size() > 0) h = attn_->at<AttnBlock>(i).forward(h);
  }
  return resample_ ? resample_->forward(h) : h;
}

MidBlock::MidBlock(Generator& gen, int64_t channels, double dropout) {
  block_1_ =
      register_module("block_1", std::make_shared<ResnetBlock>(gen, channels, channels, dropout));
  attn_1_ = register_module("attn_1", std::make_shared<AttnBlock>(gen, channels));
  block_2_ =
      register_module("block_2", std::make_shared<ResnetBlock>(gen, channels, channels, dropout));
}

Tensor MidBlock::forward(const Tensor& x) const {
  return block_2_->forward(attn_1_->forward(block_1_->forward(x)));
}

Encoder::Encoder(const ModelConfig& c, Generator& gen) {
  c.validate();
  const int64_t levels = static_cast<int64_t>(c.ch_mult.size());
  conv_in_ =
      register_module("conv_in", std::make_shared<nn::Conv2d>(gen, c.in_channels, c.ch, 3, 1, 1));
  down_ = register_module("down", std::make_shared<nn::ModuleList>());
  int64_t channels = c.ch, resolution = c.resolution;
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t out = c.ch * c.ch_mult[l];
    auto level = down_->push_back(std::make_shared<Level>(gen, channels, out, c.num_res_blocks,
                                                          has_attention(c, resolution), c.dropout));
    if (l != levels - 1) {
      level->set_resample("downsample", std::make_shared<Downsample>(gen, out));
      resolution /= 2;
    }
    channels = out;
  }
  mid_ = register_module("mid", std::make_shared<MidBlock>(gen, channels, c.dropout));
  norm_out_ = register_module("norm_out", make_norm(channels));
  conv_out_ = register_module("conv_out",
                              std::make_shared<nn::Conv2d>(gen, channels, c.z_channels, 3, 1, 1));
}

Tensor Encoder::forward(const Tensor& x) {
  Tensor h = conv_in_->forward(x);
  for (size_t l = 0; l < down_->size(); ++l) h = down_->at<Level>(l).forward(h);
  h = mid_->forward(h);
  return conv_out_->forward(norm_out_->forward_silu_for_conv(h));
}

Decoder::Decoder(const ModelConfig& c, Generator& gen) {
  c.validate();
  const int64_t levels = static_cast<int64_t>(c.ch_mult.size());
  int64_t channels = c.ch * c.ch_mult.back(), resolution = c.latent_size();
  conv_in_ = register_module("conv_in",
                             std::make_shared<nn::Conv2d>(gen, c.z_channels, channels, 3, 1, 1));
  mid_ = register_module("mid", std::make_shared<MidBlock>(gen, channels, c.dropout));
  // Built from the innermost level outwards (the order data flows), registered by level index.
  std::vector<std::shared_ptr<Level>> levels_by_index(levels);
  for (int64_t l = levels - 1; l >= 0; --l) {
    const int64_t out = c.ch * c.ch_mult[l];
    levels_by_index[l] = std::make_shared<Level>(gen, channels, out, c.num_res_blocks + 1,
                                                 has_attention(c, resolution), c.dropout);
    if (l != 0) {
      levels_by_index[l]->set_resample("upsample", std::make_shared<Upsample>(gen, out));
      resolution *= 2;
    }
    channels = out;
  }
  up_ = register_module("up", std::make_shared<nn::ModuleList>());
  for (auto& level : levels_by_index) up_->push_back(level);
  norm_out_ = register_module("norm_out", make_norm(channels));
  conv_out_ = register_module("conv_out",
                              std::make_shared<nn::Conv2d>(gen, channels, c.out_channels, 3, 1, 1));
}

Tensor Decoder::forward(const Tensor& z) {
  Tensor h = mid_->forward(conv_in_->forward(z));
  for (size_t l = up_->size(); l-- > 0;) h = up_->at<Level>(l).forward(h);
  return conv_out_->forward(norm_out_->forward_silu_for_conv(h));
}

}  // namespace vq::models
