// The perceptual (LPIPS-style) distance used by the VQGAN loss:
//   features: VGG16's conv stack in five slices, taken after relu1_2, relu2_2, relu3_3, relu4_3
//             and relu5_3 (inputs are shifted/scaled per channel first; grey images are repeated
//             to three channels);
//   per slice: each feature vector unit-normalised over channels, squared difference between
//             the two images, weighted per channel by a 1x1 "lin" layer, averaged over space;
//   result:   the sum over slices, one value per image [N, 1, 1, 1].
//
// Parameter names follow taming's LPIPS (scaling_layer.shift, net.slice1.0.weight, ...,
// lin0.model.1.weight); torchvision's VGG16 names (features.N.weight) load too. Pretrained
// ImageNet weights cannot be downloaded on our machines, so the weights come from a file
// (LPIPS/torchvision exported to safetensors, or one made by vq_pretrain_perceptual) or stay
// random; describe() says which, and every program prints it. Without lin weights in the file,
// every channel weighs 1/C (a plain mean over channels).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/container.h"
#include "nn/conv2d.h"

namespace vq::models {

// VGG16's features as LPIPS slices them: net.slice1 .. net.slice5, layers keeping torchvision's
// indices (slice2.5 is features.5).
class Vgg16Features : public nn::Module {
 public:
  static constexpr int kSlices = 5;
  Vgg16Features();
  // The relu outputs that end each slice.
  std::vector<Tensor> forward(const Tensor& x);
  static int64_t channels(int slice);

 private:
  std::shared_ptr<nn::Sequential> slices_[kSlices];
};

class PerceptualLoss : public nn::Module {
 public:
  PerceptualLoss();
  // Distance per image [N, 1, 1, 1] between two batches of images in [-1, 1].
  Tensor forward(const Tensor& a, const Tensor& b);
  // The five feature maps of one batch (inputs in [-1, 1], 1 or 3 channels).
  std::vector<Tensor> features(const Tensor& x);
  // Loads weights from a safetensors file (names as above, optionally under "loss.perceptual_loss."
  // or "perceptual_loss."); throws listing missing convolution weights.
  void load(const std::string& path);
  const std::string& describe() const { return source_; }
  Vgg16Features& net() { return *net_; }

 private:
  Tensor shift_, scale_;
  std::shared_ptr<Vgg16Features> net_;
  std::vector<std::shared_ptr<nn::Conv2d>> lins_;
  std::string source_;
};

}  // namespace vq::models
