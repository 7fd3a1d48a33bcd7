// The VQGAN training objective (taming's VQLPIPSWithDiscriminator with the seed's weights):
//   generator:     l1_w * mean|x - x^| + perc_w * mean LPIPS(x, x^)            (nll)
//                  + lambda * (-mean D(x^))                                   (adversarial)
//                  + the quantizer's terms (commitment, codebook, entropy, ...)
//   lambda:        adv_w * ||grad_L nll|| / (||grad_L adv|| + 1e-4), clamped to [0, 1e4],
//                  with L the decoder's last layer (taming's adaptive weight), or adv_w when
//                  not adaptive
//   discriminator: hinge (or vanilla) loss on D(x) and D(sg(x^))
// Both adversarial terms are off before `disc_start` generator steps.
#pragma once

#include <memory>
#include <string>

#include "autograd/generator.h"
#include "models/patch_discriminator.h"
#include "models/perceptual.h"

namespace vq::models {

struct LossConfig {
  double l1_weight = 0.7;
  double perceptual_weight = 0.005;
  double adversarial_weight = 0.4;
  bool adaptive_weight = true;
  int64_t disc_start = 0;
  std::string disc_loss = "hinge";  // "hinge" or "vanilla"
  int64_t disc_ndf = 64;
  int64_t disc_layers = 3;
  // stlpips-vgg / stlpips-alex (installed by scripts/setup.sh), a safetensors file, or "random"
  // (untrained VGG16); empty: off
  std::string perceptual_weights;
  void validate() const;
};

class VQGANLoss : public nn::Module {
 public:
  VQGANLoss(const LossConfig& config, int64_t image_channels, Generator& gen);

  // The terms are scalars on the device (undefined when off), so that computing them waits for
  // nothing; lambda (adaptive_weight) too, computed there from the two gradient norms.
  struct GeneratorTerms {
    Tensor total;
    Tensor l1, perceptual, nll, g_adv, adaptive_weight;  // detached
  };
  // `quant_loss` is the quantizer's summed terms; `last_layer` the decoder's final weight.
  GeneratorTerms generator_loss(const Tensor& x, const Tensor& reconstruction,
                                const Tensor& quant_loss, const Tensor& last_layer, int64_t step);

  struct DiscriminatorTerms {
    Tensor total;
    Tensor logits_real, logits_fake;  // mean D(x) and D(x^), detached scalars on the device
  };
  DiscriminatorTerms discriminator_loss(const Tensor& x, const Tensor& reconstruction);

  bool adversarial_active(int64_t step) const {
    return config_.adversarial_weight > 0 && step >= config_.disc_start;
  }
  NLayerDiscriminator& discriminator() { return *discriminator_; }
  std::string perceptual_description() const;

 private:
  LossConfig config_;
  std::shared_ptr<NLayerDiscriminator> discriminator_;
  std::shared_ptr<PerceptualLoss> perceptual_;
};

}  // namespace vq::models
