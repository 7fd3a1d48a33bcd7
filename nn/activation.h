// Activation layers (no parameters), for use in Sequential.
#pragma once

#include "autograd/ops.h"
#include "nn/module.h"

namespace vq::nn {

class SiLU : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override { return silu(x); }
};

class ReLU : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
};

class Tanh : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override { return tanh(x); }
};

class LeakyReLU : public UnaryModule {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : slope_(negative_slope) {}
  Tensor forward(const Tensor& x) override { return leaky_relu(x, slope_); }

 private:
  double slope_;
};

// Nearest-neighbour upsampling by an integer factor.
class Upsample : public UnaryModule {
 public:
  explicit Upsample(int64_t scale) : scale_(scale) {}
  Tensor forward(const Tensor& x) override { return upsample_nearest2d(x, scale_); }

 private:
  int64_t scale_;
};

}  // namespace vq::nn
