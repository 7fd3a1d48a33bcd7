// The feature networks of the LPIPS family, each cut into five slices whose last ReLU output is
// one feature map:
//   Vgg16      the original LPIPS trunk: VGG16's convolutions, 2x2 max-pool with stride 2;
//   StVgg16    shift-tolerant LPIPS (ST-LPIPS, Ghildyal and Liu 2022): every max-pool keeps
//              stride 1 and a blur downsample (below) does the subsampling, so a one-pixel shift
//              of the image barely changes the features;
//   StAlexNet  the same idea on AlexNet: its first convolution runs at stride 1 and is followed
//              by a blur downsample.
// Layers keep the index they have in the Python networks, so weight names match the published
// files (net.slice2.6.weight is layer 6 of the ST VGG16).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "autograd/generator.h"
#include "nn/container.h"

namespace vq::models {

enum class PerceptualNet { Vgg16, StVgg16, StAlexNet };
std::string perceptual_net_name(PerceptualNet net);  // "vgg16", "stlpips-vgg", "stlpips-alex"

// Anti-aliased subsampling by 2, applied to every channel alone: mirror-pad 2 pixels on each
// side (the edge is not repeated), then the 3x3 binomial filter [1,2,1]^T [1,2,1] / 16 at
// stride 2. A side of n pixels becomes floor((n + 1) / 2) + 1; n must be at least 3.
Tensor blur_downsample(const Tensor& x);
// The filter above, [3, 3].
Tensor binomial_blur_filter(DType dtype = DType::Float32);

class PerceptualTrunk : public nn::Module {
 public:
  static constexpr int kSlices = 5;
  // Random convolution weights drawn from gen (until weights are loaded).
  PerceptualTrunk(PerceptualNet net, Generator& gen);
  // The five feature maps of x [N, 3, H, W].
  std::vector<Tensor> forward(const Tensor& x);
  int64_t channels(int slice) const { return channels_[slice]; }
  // The smallest square image every layer accepts (convolutions, pools and mirror padding
  // need inputs at least as large as their windows).
  int64_t min_image_size() const { return min_size_; }

 private:
  std::shared_ptr<nn::Sequential> slices_[kSlices];
  int64_t channels_[kSlices] = {};
  int64_t min_size_ = 1;
};

}  // namespace vq::models
