#include "models/model_config.h"

#include <algorithm>

#include "autograd/error.h"

namespace vq::models {

int64_t ModelConfig::latent_size() const {
  return resolution >> (static_cast<int64_t>(ch_mult.size()) - 1);
}

namespace {

double conv_weights(double in, double out, double kernel) {
  return in * out * kernel * kernel + out;
}
double norm_weights(double channels) { return 2 * channels; }
double resnet_weights(double in, double out) {
  return norm_weights(in) + conv_weights(in, out, 3) + norm_weights(out) +
         conv_weights(out, out, 3) + (in != out ? conv_weights(in, out, 1) : 0);
}
double attention_weights(double channels) {
  return norm_weights(channels) + 4 * conv_weights(channels, channels, 1);
}
double mid_weights(double channels) {
  return 2 * resnet_weights(channels, channels) + attention_weights(channels);
}

}  // namespace

double ModelConfig::weight_count() const {
  const auto has_attention = [&](int64_t r) {
    return std::find(attn_resolutions.begin(), attn_resolutions.end(), r) != attn_resolutions.end();
  };
  const int64_t levels = static_cast<int64_t>(ch_mult.size());
  // Encoder: conv_in, levels of res blocks (+ attention) with a downsample between, mid, out.
  double total = conv_weights(in_channels, ch, 3);
  double channels = ch;
  int64_t r = resolution;
  for (int64_t l = 0; l < levels; ++l) {
    const double out = static_cast<double>(ch) * ch_mult[l];
    for (int64_t b = 0; b < num_res_blocks; ++b) {
      total += resnet_weights(b == 0 ? channels : out, out);
      if (has_attention(r)) total += attention_weights(out);
    }
    if (l != levels - 1) total += conv_weights(out, out, 3), r /= 2;
    channels = out;
  }
  total += mid_weights(channels) + norm_weights(channels) + conv_weights(channels, z_channels, 3);
  // The 1x1 convolutions into and out of the code space.
  total += conv_weights(z_channels, embed_dim, 1) + conv_weights(embed_dim, z_channels, 1);
  // Decoder: the mirror image, one res block more per level, upsampling.
  total += conv_weights(z_channels, channels, 3) + mid_weights(channels);
  for (int64_t l = levels - 1; l >= 0; --l) {
    const double out = static_cast<double>(ch) * ch_mult[l];
    for (int64_t b = 0; b <= num_res_blocks; ++b) {
      total += resnet_weights(b == 0 ? channels : out, out);
      if (has_attention(r)) total += attention_weights(out);
    }
    if (l != 0) total += conv_weights(out, out, 3), r *= 2;
    channels = out;
  }
  return total + norm_weights(channels) + conv_weights(channels, out_channels, 3);
}

void ModelConfig::validate() const {
  VQ_CHECK(!ch_mult.empty() && static_cast<int64_t>(ch_mult.size()) <= kMaxModelLevels,
           "model config: ch_mult must list 1 to {} levels (kMaxModelLevels), got {}",
           kMaxModelLevels, ch_mult.size());
  for (int64_t m : ch_mult)
    VQ_CHECK(m >= 1, "model config: every ch_mult entry must be >= 1, got {}", m);
  VQ_CHECK(resolution >= 1 && resolution <= kMaxModelResolution,
           "model config: resolution must be in [1, {}] (kMaxModelResolution), got {}",
           kMaxModelResolution, resolution);
  VQ_CHECK(in_channels == 1 || in_channels == 3, "model config: in_channels must be 1 or 3, got {}",
           in_channels);
  VQ_CHECK(out_channels == 1 || out_channels == 3,
           "model config: out_channels must be 1 or 3, got {}", out_channels);
  VQ_CHECK(ch > 0 && ch % 32 == 0,
           "model config: ch must be a positive multiple of 32 (GroupNorm uses 32 groups), got {}",
           ch);
  VQ_CHECK(num_res_blocks >= 1, "model config: num_res_blocks must be >= 1, got {}",
           num_res_blocks);
  VQ_CHECK(z_channels > 0 && z_channels % 32 == 0,
           "model config: z_channels must be a positive multiple of 32, got {}", z_channels);
  VQ_CHECK(embed_dim > 0, "model config: embed_dim must be positive, got {}", embed_dim);
  const int64_t factor = int64_t{1} << (ch_mult.size() - 1);
  VQ_CHECK(
      resolution >= factor && resolution % factor == 0,
      "model config: resolution {} must be divisible by {} (2^(levels-1) for ch_mult of {} levels)",
      resolution, factor, ch_mult.size());
  VQ_CHECK(dropout >= 0.0 && dropout < 1.0, "model config: dropout must be in [0, 1), got {}",
           dropout);
  const double weights = weight_count();
  VQ_CHECK(weights <= kMaxModelWeights,
           "model config: the model would have {:.3g} weights, above the limit of {:.3g} "
           "(kMaxModelWeights)",
           weights, kMaxModelWeights);
}

void ModelConfig::name_custom_if_changed() {
  if ((name == "fmnist" || name == "seed256") && *this != model_config_by_name(name)) {
    name = "custom";
  }
}

ModelConfig model_config_by_name(const std::string& name) {
  ModelConfig c;
  if (name == "fmnist") return c;
  if (name == "seed256") {
    c.name = "seed256";
    c.resolution = 256;
    c.in_channels = 3;
    c.out_channels = 3;
    c.ch = 128;
    c.ch_mult = {1, 1, 2, 2, 4};
    c.num_res_blocks = 2;
    c.attn_resolutions = {16};
    c.z_channels = 256;
    c.embed_dim = 256;
    return c;
  }
  throw Error(fmt::format("unknown model config '{}': expected fmnist or seed256", name));
}

}  // namespace vq::models
