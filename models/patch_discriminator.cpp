#include "models/patch_discriminator.h"

#include "nn/activation.h"
#include "nn/conv2d.h"
#include "nn/init.h"
#include "nn/norm.h"

namespace vq::models {

NLayerDiscriminator::NLayerDiscriminator(int64_t input_channels, int64_t ndf, int64_t n_layers,
                                         Generator& gen) {
  VQ_CHECK(ndf > 0 && n_layers >= 1,
           "NLayerDiscriminator: need ndf > 0 and n_layers >= 1 (got {}, {})", ndf, n_layers);
  main_ = register_module("main", std::make_shared<nn::Sequential>());
  auto conv = [&](int64_t in, int64_t out, int64_t stride, bool bias) {
    auto c = main_->push_back(std::make_shared<nn::Conv2d>(gen, in, out, 4, stride, 1, bias));
    nn::init::normal_(c->weight(), 0.0, 0.02, gen);
  };
  auto batch_norm = [&](int64_t channels) {
    auto bn = main_->push_back(std::make_shared<nn::BatchNorm2d>(channels));
    nn::init::normal_(bn->weight(), 1.0, 0.02, gen);
    nn::init::constant_(bn->bias(), 0.0);
  };
  conv(input_channels, ndf, 2, true);
  main_->push_back(std::make_shared<nn::LeakyReLU>(0.2));
  int64_t mult = 1;
  for (int64_t n = 1; n <= n_layers; ++n) {
    const int64_t prev = mult;
    mult = std::min<int64_t>(int64_t{1} << n, 8);
    conv(ndf * prev, ndf * mult, n < n_layers ? 2 : 1, false);
    batch_norm(ndf * mult);
    main_->push_back(std::make_shared<nn::LeakyReLU>(0.2));
  }
  conv(ndf * mult, 1, 1, true);
}

Tensor NLayerDiscriminator::forward(const Tensor& x) { return main_->forward(x); }

}  // namespace vq::models
