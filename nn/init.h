// Parameter initialisation, matching PyTorch's defaults so a model built here and in PyTorch with
// the same shapes has the same parameter statistics. All draw from the Generator passed (never the
// process-wide one, so a model's seed alone decides its weights) and write in place without
// recording a graph.
#pragma once

#include "autograd/generator.h"
#include "autograd/tensor.h"

namespace vq::nn::init {

void uniform_(const Tensor& t, double lo, double hi, Generator& gen);
void normal_(const Tensor& t, double mean, double std, Generator& gen);
void constant_(const Tensor& t, double value);
// fan_in of a weight: in_features for [out, in], C*kH*kW for [O, C, kH, kW].
int64_t fan_in(const Tensor& weight);
// PyTorch's Conv/Linear default: kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(fan_in), +).
void kaiming_uniform_default_(const Tensor& weight, Generator& gen);
// PyTorch's Conv/Linear bias default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) of the weight's fan_in.
void bias_default_(const Tensor& bias, const Tensor& weight, Generator& gen);

}  // namespace vq::nn::init
