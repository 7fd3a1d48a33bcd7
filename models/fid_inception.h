// The Inception-v3 network of the Fréchet Inception Distance (FID, Heusel et al. 2017) as
// pytorch-fid defines it: TensorFlow's 2015 Inception graph ported to PyTorch, whose pools differ
// from torchvision's (the average pools leave the padding out of their divisor, the last block
// max-pools). Images go in, one 2048-d vector per image comes out, the final average pool's.
//
//   input      images in [0, 1], 1 or 3 channels (grey is repeated to RGB, as pytorch-fid's
//              loader does), resized bilinearly to 299x299, then scaled to [-1, 1];
//   stem       3x3 convolutions 32 (stride 2), 32, 64, a 3x3 max pool (stride 2), 1x1 80,
//              3x3 192, a 3x3 max pool (stride 2);
//   Mixed_5b-d four branches each: 1x1; 1x1 -> 5x5; 1x1 -> 3x3 -> 3x3; 3x3 average pool -> 1x1;
//   Mixed_6a   3x3 stride 2; 1x1 -> 3x3 -> 3x3 stride 2; max pool stride 2;
//   Mixed_6b-e 1x1; 1x1 -> 1x7 -> 7x1; 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7; average pool -> 1x1;
//   Mixed_7a   1x1 -> 3x3 stride 2; 1x1 -> 1x7 -> 7x1 -> 3x3 stride 2; max pool stride 2;
//   Mixed_7b-c 1x1; 1x1 -> (1x3 | 3x1); 1x1 -> 3x3 -> (1x3 | 3x1); pool -> 1x1 (7b averages,
//              7c takes the maximum), then the mean over all positions.
// Every convolution is a "BasicConv2d": no bias, batch norm (eps 0.001, running statistics), ReLU.
// The batch norm is folded into the convolution's weight and bias when the weights load.
//
// The weights are the user's own file: scripts/convert_fid_inception.py turns pytorch-fid's
// pt_inception-2015-12-05-6726825d.pth into safetensors in the same names
// (Mixed_5b.branch1x1.conv.weight, Mixed_5b.branch1x1.bn.running_var, ...).
#pragma once

#include <array>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace vq::models {

class FidInception {
 public:
  static constexpr int64_t kFeatures = 2048;  // pytorch-fid's default dims
  static constexpr int64_t kInputSize = 299;

  // Reads the weights (on the CPU, then moved to `device`); throws naming the first tensor that
  // is missing or has the wrong shape, and how to make the file.
  FidInception(const std::string& path, Device device);

  // The pool features [N, 2048] (float32) of images [N, 1 or 3, H, W] in [0, 1], H, W >= 1.
  Tensor features(const Tensor& images) const;

  // Every tensor the weights file must hold, in pytorch-fid's names, with its shape.
  static std::vector<std::pair<std::string, Shape>> weight_shapes();

 private:
  struct Conv {  // a BasicConv2d with its batch norm folded in
    Tensor weight, bias;
    std::array<int64_t, 2> stride, padding;
  };
  Tensor conv(const std::string& name, const Tensor& x) const;
  Tensor mixed_a(const std::string& block, const Tensor& x) const;
  Tensor mixed_b(const std::string& block, const Tensor& x) const;
  Tensor mixed_c(const std::string& block, const Tensor& x) const;
  Tensor mixed_d(const std::string& block, const Tensor& x) const;
  Tensor mixed_e(const std::string& block, const Tensor& x, bool max_pool) const;

  std::map<std::string, Conv> convs_;
};

}  // namespace vq::models
