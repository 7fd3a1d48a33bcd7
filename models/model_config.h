// Architecture of the VQGAN (taming-transformers' ddconfig plus the codebook size and dimension)
// and the two built-in reference configs (the seed's Fashion-MNIST and 256x256 models).
//
//   fmnist : 32x32 grey, ch 64, ch_mult (1,2,2), 1 res block, no attention levels -> 8x8 latents
//   seed256: 256x256 RGB, ch 128, ch_mult (1,1,2,2,4), 2 res blocks, attention at 16 -> 16x16
#pragma once

#include <string>
#include <vector>

namespace vq::models {

// Limits on what a config may ask for (a config can come from an untrusted file), far above any
// VQGAN in use (the seed's 256x256 model: 5 levels, resolution 256, 71.9 million weights).
inline constexpr int64_t kMaxModelLevels = 8;
inline constexpr int64_t kMaxModelResolution = 8192;
inline constexpr double kMaxModelWeights = 2e9;

struct ModelConfig {
  std::string name = "fmnist";
  int64_t resolution = 32;
  int64_t in_channels = 1;
  int64_t out_channels = 1;
  int64_t ch = 64;
  std::vector<int64_t> ch_mult{1, 2, 2};
  int64_t num_res_blocks = 1;
  std::vector<int64_t> attn_resolutions{};  // resolutions (e.g. 16) whose levels get attention
  int64_t z_channels = 256;
  double dropout = 0.0;
  int64_t embed_dim = 256;  // codebook vector size D (quant_conv maps z_channels -> D)

  bool operator==(const ModelConfig&) const = default;
  // A config named like a built-in one (fmnist, seed256) but differing from it is renamed
  // "custom", so that a 64x64 RGB model made by flags is not stored and reported as "fmnist".
  void name_custom_if_changed();

  int64_t latent_size() const;  // resolution / 2^(levels - 1)
  // The weights (parameters) of the encoder, decoder and the convolutions around the quantizer
  // that this config builds, counted without building them, so that a config from a file can be
  // refused before it allocates more than the file could fill. tests/test_models.cpp checks it
  // against the built model.
  double weight_count() const;
  // Throws naming the field when the combination cannot be built (e.g. channels not divisible
  // by the 32 GroupNorm groups, resolution not divisible by the downsampling), or when it asks
  // for more than the limits below.
  void validate() const;
};

// "fmnist" or "seed256"; throws listing the names otherwise.
ModelConfig model_config_by_name(const std::string& name);

}  // namespace vq::models
