// GAN losses (L1, MSE and BCE-with-logits are ops in autograd/ops.h). Conventions follow
// taming-transformers: the discriminator outputs logits, "real" should score high.
#pragma once

#include "autograd/tensor.h"

namespace vq::nn {

// Hinge: mean(relu(1 - real)) / 2 + mean(relu(1 + fake)) / 2.
Tensor hinge_d_loss(const Tensor& logits_real, const Tensor& logits_fake);
// Vanilla (non-saturating BCE): mean(softplus(-real)) / 2 + mean(softplus(fake)) / 2.
Tensor vanilla_d_loss(const Tensor& logits_real, const Tensor& logits_fake);
// The generator's adversarial loss for both: -mean(logits_fake).
Tensor generator_adversarial_loss(const Tensor& logits_fake);

}  // namespace vq::nn
