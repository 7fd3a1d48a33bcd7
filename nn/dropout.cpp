#include "nn/dropout.h"

#include "autograd/ops.h"

namespace vq::nn {

Dropout::Dropout(double p, Generator* gen) : p_(p), gen_(gen) {
  VQ_CHECK(p >= 0.0 && p < 1.0, "Dropout: p must be in [0, 1), got {}", p);
}

Tensor Dropout::forward(const Tensor& x) {
  if (is_identity()) return x;
  Generator& gen = gen_ ? *gen_ : default_generator();
  const Tensor keep =
      ge(rand(x.shape(), gen, x.dtype(), x.device()), scalar_tensor(p_, x.dtype(), x.device()));
  return mul(x, mul(keep.to(x.dtype()), 1.0 / (1.0 - p_)));
}

}  // namespace vq::nn
