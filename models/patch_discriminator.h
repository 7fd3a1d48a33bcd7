// PatchGAN discriminator (pix2pix's NLayerDiscriminator, as taming uses it): a stack of 4x4
// convolutions that scores overlapping patches of an image as real (high) or fake (low).
//   main.0  conv in->ndf, stride 2;  LeakyReLU(0.2)
//   then n_layers - 1 times: conv (stride 2, no bias), BatchNorm, LeakyReLU(0.2), channels doubling
//   up to 8 ndf; then one conv with stride 1, BatchNorm, LeakyReLU; last a conv to 1 channel.
// Initialisation as taming's weights_init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02)
// and biases 0; conv biases keep PyTorch's default. Everything is drawn from the Generator given.
// Output: logits [N, 1, h', w'] (2x2 for 32x32 inputs with 3 layers).
#pragma once

#include <memory>

#include "autograd/generator.h"
#include "nn/container.h"

namespace vq::models {

class NLayerDiscriminator : public nn::UnaryModule {
 public:
  NLayerDiscriminator(int64_t input_channels, int64_t ndf, int64_t n_layers, Generator& gen);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<nn::Sequential> main_;
};

}  // namespace vq::models
