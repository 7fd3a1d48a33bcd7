// Losses, composed from primitive ops (their gradients come from the primitives' rules).
#include "autograd/ops/op_util.h"

namespace vq {

namespace {

void check_loss(const char* op, const Tensor& input, const Tensor& target) {
  check_same(op, input, target);
  check_floating(op, input);
  VQ_CHECK(input.shape() == target.shape(), "{}: input {} and target {} must have the same shape",
           op, shape_str(input.shape()), shape_str(target.shape()));
}

}  // namespace

Tensor l1_loss(const Tensor& input, const Tensor& target) {
  check_loss("l1_loss", input, target);
  return mean(abs(sub(input, target)));
}

Tensor mse_loss(const Tensor& input, const Tensor& target) {
  check_loss("mse_loss", input, target);
  const Tensor d = sub(input, target);
  return mean(mul(d, d));
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target) {
  check_loss("binary_cross_entropy_with_logits", logits, target);
  // -[y log s(x) + (1 - y) log(1 - s(x))] = softplus(x) - x y
  return mean(sub(softplus(logits), mul(logits, target)));
}

}  // namespace vq
