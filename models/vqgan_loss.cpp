#include "models/vqgan_loss.h"

#include <cmath>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/dist/communicator.h"
#include "nn/losses.h"

namespace vq::models {

void LossConfig::validate() const {
  VQ_CHECK(l1_weight >= 0 && perceptual_weight >= 0 && adversarial_weight >= 0,
           "loss: weights must be >= 0 (l1 {}, perceptual {}, adversarial {})", l1_weight,
           perceptual_weight, adversarial_weight);
  VQ_CHECK(disc_loss == "hinge" || disc_loss == "vanilla",
           "loss: disc_loss must be hinge or vanilla, got '{}'", disc_loss);
  VQ_CHECK(disc_start >= 0, "loss: disc_start must be >= 0, got {}", disc_start);
}

VQGANLoss::VQGANLoss(const LossConfig& config, int64_t image_channels, Generator& gen)
    : config_(config) {
  config_.validate();
  discriminator_ = register_module(
      "discriminator", std::make_shared<NLayerDiscriminator>(image_channels, config_.disc_ndf,
                                                             config_.disc_layers, gen));
  if (config_.perceptual_weight > 0 && !config_.perceptual_weights.empty()) {
    perceptual_ = register_module("perceptual_loss",
                                  config_.perceptual_weights == "random"
                                      ? std::make_shared<PerceptualLoss>(PerceptualNet::Vgg16, gen)
                                      : PerceptualLoss::from_weights(config_.perceptual_weights));
  }
}

std::string VQGANLoss::perceptual_description() const {
  if (perceptual_) return perceptual_->describe();
  if (config_.perceptual_weight == 0) return "off (perceptual_weight is 0)";
  return fmt::format(
      "off: no perceptual weights given, so perceptual_weight {} is not applied (pass "
      "--perceptual_weights stlpips-vgg for the shift-tolerant LPIPS VGG16 that scripts/setup.sh "
      "installs, a safetensors FILE, or random for untrained VGG16 features)",
      config_.perceptual_weight);
}

VQGANLoss::GeneratorTerms VQGANLoss::generator_loss(const Tensor& x, const Tensor& reconstruction,
                                                    const Tensor& quant_loss,
                                                    const Tensor& last_layer, int64_t step) {
  GeneratorTerms out;
  const Tensor l1 = l1_loss(reconstruction, x);
  Tensor nll = mul(l1, config_.l1_weight);
  out.l1 = l1.detach();
  if (perceptual_) {
    const Tensor p = mean(perceptual_->forward(x, reconstruction));
    nll = add(nll, mul(p, config_.perceptual_weight));
    out.perceptual = p.detach();
  }
  out.nll = nll.detach();
  Tensor total = add(nll, quant_loss);
  if (adversarial_active(step)) {
    // The generator's step must not compute gradients for the discriminator's weights.
    discriminator_->requires_grad_(false);
    const Tensor g_adv = nn::generator_adversarial_loss(discriminator_->forward(reconstruction));
    discriminator_->requires_grad_(true);
    Tensor lambda = scalar_tensor(config_.adversarial_weight, g_adv.dtype(), g_adv.device());
    if (config_.adaptive_weight) {
      const Tensor g_nll = grad(nll, {last_layer}, /*retain_graph=*/true)[0];
      const Tensor g_gan = grad(g_adv, {last_layer}, /*retain_graph=*/true)[0];
      // Under data parallelism: the norms of the global batch's gradients, the same on every rank.
      dist::world().all_reduce_mean(g_nll);
      dist::world().all_reduce_mean(g_gan);
      // squared_norm sums in double; the ratio is formed there too, as it was on the host.
      const Tensor ratio = div(sqrt(squared_norm({g_nll})), add(sqrt(squared_norm({g_gan})), 1e-4));
      lambda = mul(clamp(ratio, 0.0, 1e4), config_.adversarial_weight).to(g_adv.dtype());
    }
    total = add(total, mul(g_adv, lambda));
    out.g_adv = g_adv.detach();
    out.adaptive_weight = lambda;
  }
  out.total = total;
  return out;
}

VQGANLoss::DiscriminatorTerms VQGANLoss::discriminator_loss(const Tensor& x,
                                                            const Tensor& reconstruction) {
  DiscriminatorTerms out;
  const Tensor real = discriminator_->forward(x.detach());
  const Tensor fake = discriminator_->forward(reconstruction.detach());
  out.total =
      config_.disc_loss == "hinge" ? nn::hinge_d_loss(real, fake) : nn::vanilla_d_loss(real, fake);
  out.logits_real = mean(real).detach();
  out.logits_fake = mean(fake).detach();
  return out;
}

}  // namespace vq::models
