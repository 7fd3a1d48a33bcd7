// The perceptual (LPIPS-family) distance used by the VQGAN loss and reported as a metric:
//   features: one of the trunks of perceptual_nets.h, five feature maps (inputs in [-1, 1] are
//             shifted/scaled per channel first; grey images are repeated to three channels);
//   per slice: each feature vector unit-normalised over channels, squared difference between
//             the two images, weighted per channel by a 1x1 "lin" layer, averaged over space;
//   result:   the sum over slices, one value per image [N, 1, 1, 1].
//
// Weights come from a safetensors file, never from the internet:
//   stlpips-vgg / stlpips-alex  the shift-tolerant LPIPS networks (ST-LPIPS) that
//                               scripts/setup.sh installs from PyPI's stlpips-pytorch wheel and
//                               converts into build/weights (scripts/convert_stlpips.py);
//   lpips-vgg                   the standard LPIPS (Zhang et al. 2018, v0.1, VGG16): the user's
//                               torchvision VGG16 weights with the lin layers of PyPI's lpips
//                               wheel, converted by scripts/convert_lpips.py into
//                               lpips_vgg.safetensors;
//   FILE                        any safetensors file in those names, or the original LPIPS VGG16
//                               in LPIPS names (net.slice1.0.weight, lin0.model.1.weight, ...) or
//                               torchvision names (features.N.weight).
// The file's tensor names (or its vqgan.perceptual_net metadata) decide which network it is.
// Without weights (tests, benchmarks) the VGG16 trunk stays random; describe() says which.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/perceptual_nets.h"
#include "nn/conv2d.h"
#include "nn/safetensors.h"

namespace vq::models {

// One slice's term, [N, 1, 1, 1]: the features fa, fb [N, C, h, w] made unit length over
// channels at each position, their squared difference weighted per channel by the 1x1
// lin_weight [1, C, 1, 1] and averaged over positions.
Tensor layer_distance(const Tensor& fa, const Tensor& fb, const Tensor& lin_weight);

// The file behind a weights name: stlpips-vgg, stlpips-alex and lpips-vgg resolve to
// stlpips_{vgg,alex}.safetensors and lpips_vgg.safetensors in $VQ_WEIGHTS_DIR or else in the
// build's weights folder (beside the program's bin/); anything else is a path, returned as is.
std::string perceptual_weights_file(const std::string& name_or_path);

class PerceptualLoss : public nn::Module {
 public:
  // A random trunk drawn from gen (lin layers uniform 1/C): the "random" weights of tests and
  // benchmarks, until load() replaces them.
  PerceptualLoss(PerceptualNet net, Generator& gen);
  // Builds the network a weights file holds and loads it (see perceptual_weights_file); throws
  // saying how to install the weights when the file does not exist.
  static std::shared_ptr<PerceptualLoss> from_weights(const std::string& name_or_path);

  // Distance per image [N, 1, 1, 1] between two batches of images in [-1, 1].
  Tensor forward(const Tensor& a, const Tensor& b);
  // The five feature maps of one batch (inputs in [-1, 1], 1 or 3 channels).
  std::vector<Tensor> features(const Tensor& x);
  // Loads weights in this network's names (optionally under "loss.perceptual_loss." or
  // "perceptual_loss."); throws listing missing convolution weights.
  void load(const std::string& path);
  const std::string& describe() const { return source_; }
  PerceptualNet net_kind() const { return kind_; }
  PerceptualTrunk& net() { return *net_; }
  int64_t min_image_size() const { return net_->min_image_size(); }

 private:
  void load_file(const nn::SafetensorsFile& file, const std::string& path);

  PerceptualNet kind_;
  Tensor shift_, scale_;
  std::shared_ptr<PerceptualTrunk> net_;
  std::vector<std::shared_ptr<nn::Conv2d>> lins_;
  std::string source_;
};

}  // namespace vq::models
