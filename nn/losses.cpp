#include "nn/losses.h"

#include "autograd/ops.h"

namespace vq::nn {

Tensor hinge_d_loss(const Tensor& logits_real, const Tensor& logits_fake) {
  return mul(add(mean(relu(rsub(1.0, logits_real))), mean(relu(add(logits_fake, 1.0)))), 0.5);
}

Tensor vanilla_d_loss(const Tensor& logits_real, const Tensor& logits_fake) {
  return mul(add(mean(softplus(neg(logits_real))), mean(softplus(logits_fake))), 0.5);
}

Tensor generator_adversarial_loss(const Tensor& logits_fake) { return neg(mean(logits_fake)); }

}  // namespace vq::nn
