// Dropout: in training, zeroes each element with probability p and scales the rest by 1/(1-p);
// the identity in evaluation. Masks come from the generator given (default: the global one).
#pragma once

#include "autograd/generator.h"
#include "nn/module.h"

namespace vq::nn {

class Dropout : public UnaryModule {
 public:
  explicit Dropout(double p = 0.5, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  // Whether forward returns its input as it is (evaluation, or p = 0).
  bool is_identity() const { return !is_training() || p_ == 0.0; }

 private:
  double p_;
  Generator* gen_;
};

}  // namespace vq::nn
