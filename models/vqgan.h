// VQModel (taming-transformers' name): encoder -> quant_conv (1x1, z_channels -> D) -> quantize ->
// post_quant_conv (1x1, D -> z_channels) -> decoder. Its state dict uses taming's names, so a
// taming VQModel checkpoint exported to safetensors loads (see load_weights). The seed alone
// decides the initial weights (its ModelInit stream) and the quantizer's random streams: two models
// built with the same seed are bit-identical, whatever else has drawn random numbers.
#pragma once

#include <memory>

#include "models/encoder.h"
#include "models/model_config.h"
#include "models/quantizer.h"

namespace vq::models {

class VQModel : public nn::Module {
 public:
  VQModel(const ModelConfig& model, const QuantizerConfig& quantizer, uint64_t seed);

  struct Output {
    Tensor reconstruction;  // [N, out_channels, R, R]
    QuantizerOutput quant;
  };
  Output forward(const Tensor& x);
  Tensor encode_latent(
      const Tensor& x);              // quant_conv(encoder(x)): [N, D, h, w], before quantization
  Tensor decode(const Tensor& z_q);  // decoder(post_quant_conv(z_q))
  Tensor encode_indices(const Tensor& x);  // evaluation tokens [N, h, w] (argmin codes)
  Tensor decode_indices(const Tensor& indices);

  Encoder& encoder() { return *encoder_; }
  Decoder& decoder() { return *decoder_; }
  Quantizer& quantizer() { return *quantize_; }

  // Loads weights strictly, except that a checkpoint without our quantizer statistics (taming's
  // VectorQuantizer2 has only quantize.embedding.weight) is accepted: missing counts start at 1,
  // missing EMA sums at the codes times their counts, and the codebook counts as initialised.
  // Returns a note on what was derived (empty when nothing was).
  std::string load_weights(const nn::NamedTensors& state);

 private:
  ModelConfig config_;
  std::shared_ptr<Encoder> encoder_;
  std::shared_ptr<Decoder> decoder_;
  std::shared_ptr<Quantizer> quantize_;
  std::shared_ptr<nn::Conv2d> quant_conv_, post_quant_conv_;
};

}  // namespace vq::models
