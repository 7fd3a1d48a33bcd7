#include "models/model_config.h"

#include "autograd/error.h"

namespace vq::models {

int64_t ModelConfig::latent_size() const {
  return resolution >> (static_cast<int64_t>(ch_mult.size()) - 1);
}

void ModelConfig::validate() const {
  VQ_CHECK(!ch_mult.empty(), "model config: ch_mult must list at least one level");
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
