#include "models/perceptual_nets.h"

#include "autograd/ops.h"
#include "nn/activation.h"
#include "nn/conv2d.h"

namespace vq::models {

namespace {

// One layer of a trunk, as its Python network defines it.
struct Layer {
  enum Kind { kConv, kRelu, kMaxPool, kBlur } kind;
  int index;             // position in the Python network (names the weights)
  int64_t channels = 0;  // conv: output channels
  int64_t kernel = 0;    // conv and max-pool window
  int64_t stride = 1;    // max-pool stride (every convolution here has stride 1)
  int64_t pad = 0;       // conv zero padding
};
Layer conv(int index, int64_t out, int64_t kernel, int64_t pad) {
  return {Layer::kConv, index, out, kernel, 1, pad};
}
Layer relu(int index) { return {Layer::kRelu, index}; }
Layer max_pool(int index, int64_t kernel, int64_t stride) {
  return {Layer::kMaxPool, index, 0, kernel, stride};
}
Layer blur(int index) { return {Layer::kBlur, index}; }

using Slices = std::vector<std::vector<Layer>>;

// VGG16's features as torchvision's make_layers builds them: per stage, 3x3 convolutions (zero
// pad 1) each followed by a ReLU; between stages a 2x2 max-pool with stride 2 or, shift-tolerant,
// a 2x2 max-pool with stride 1 and then a blur downsample (one more layer index). LPIPS ends its
// slices at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, the last ReLU of each stage.
Slices vgg16_slices(bool shift_tolerant) {
  const std::vector<std::vector<int64_t>> stages = {
      {64, 64}, {128, 128}, {256, 256, 256}, {512, 512, 512}, {512, 512, 512}};
  Slices slices;
  int index = 0;
  for (size_t s = 0; s < stages.size(); ++s) {
    std::vector<Layer> slice;
    if (s > 0) {
      slice.push_back(max_pool(index++, 2, shift_tolerant ? 1 : 2));
      if (shift_tolerant) slice.push_back(blur(index++));
    }
    for (int64_t out : stages[s]) {
      slice.push_back(conv(index++, out, 3, 1));
      slice.push_back(relu(index++));
    }
    slices.push_back(slice);
  }
  return slices;
}

// The shift-tolerant AlexNet: AlexNet's stride-4 first convolution runs at stride 1 and a blur
// downsample follows it (before the ReLU); each 3x3 stride-2 max-pool becomes stride 1 + blur.
Slices st_alexnet_slices() {
  return {{conv(0, 64, 11, 2), blur(1), relu(2)},
          {max_pool(3, 3, 1), blur(4), conv(5, 192, 5, 2), relu(6)},
          {max_pool(7, 3, 1), blur(8), conv(9, 384, 3, 1), relu(10)},
          {conv(11, 256, 3, 1), relu(12)},
          {conv(13, 256, 3, 1), relu(14)}};
}

Slices slices_of(PerceptualNet net) {
  switch (net) {
    case PerceptualNet::Vgg16: return vgg16_slices(false);
    case PerceptualNet::StVgg16: return vgg16_slices(true);
    case PerceptualNet::StAlexNet: return st_alexnet_slices();
  }
  throw Error("unknown perceptual network");
}

// The side length a layer makes of a side of n pixels; 0 when n is too small for it.
int64_t output_side(const Layer& layer, int64_t n) {
  switch (layer.kind) {
    case Layer::kConv: return std::max<int64_t>(n + 2 * layer.pad - layer.kernel + 1, 0);
    case Layer::kMaxPool: return n < layer.kernel ? 0 : (n - layer.kernel) / layer.stride + 1;
    case Layer::kBlur: return n < 3 ? 0 : (n + 1) / 2 + 1;  // mirror padding 2 needs n >= 3
    case Layer::kRelu: return n;
  }
  return 0;
}

class MaxPool : public nn::UnaryModule {
 public:
  MaxPool(int64_t kernel, int64_t stride) : kernel_(kernel), stride_(stride) {}
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel_, stride_); }

 private:
  int64_t kernel_, stride_;
};

class BlurDownsample : public nn::UnaryModule {
 public:
  Tensor forward(const Tensor& x) override { return blur_downsample(x); }
};

}  // namespace

std::string perceptual_net_name(PerceptualNet net) {
  switch (net) {
    case PerceptualNet::Vgg16: return "vgg16";
    case PerceptualNet::StVgg16: return "stlpips-vgg";
    case PerceptualNet::StAlexNet: return "stlpips-alex";
  }
  return "?";
}

Tensor binomial_blur_filter(DType dtype) {
  const std::vector<double> taps = {1, 2, 1};
  std::vector<double> f;
  for (double a : taps)
    for (double b : taps) f.push_back(a * b / 16.0);
  return from_vector(f, {3, 3}).to(dtype);
}

Tensor blur_downsample(const Tensor& x) {
  VQ_CHECK(x.dim() == 4, "blur_downsample: expected [N, C, H, W], got {}", shape_str(x.shape()));
  const int64_t N = x.size(0), C = x.size(1);
  const Tensor padded = reflection_pad(x, {2, 2, 2, 2});
  // Every channel has the same filter, so folding the channels into the batch lets one
  // single-channel convolution do what a depthwise one would, at the same cost (a dense C x C
  // convolution would multiply it by C).
  const Tensor filter = binomial_blur_filter(x.dtype()).view({1, 1, 3, 3}).to(x.device());
  Conv2dOptions stride2;
  stride2.stride = {2, 2};
  const Tensor y =
      conv2d(padded.reshape({N * C, 1, padded.size(2), padded.size(3)}), filter, Tensor(), stride2);
  return y.reshape({N, C, y.size(2), y.size(3)});
}

PerceptualTrunk::PerceptualTrunk(PerceptualNet net, Generator& gen) {
  const Slices slices = slices_of(net);
  int64_t in = 3;
  for (int s = 0; s < kSlices; ++s) {
    slices_[s] =
        register_module("slice" + std::to_string(s + 1), std::make_shared<nn::Sequential>());
    for (const Layer& layer : slices[s]) {
      const std::string name = std::to_string(layer.index);
      switch (layer.kind) {
        case Layer::kConv:
          slices_[s]->push_back(name, std::make_shared<nn::Conv2d>(gen, in, layer.channels,
                                                                   layer.kernel, 1, layer.pad));
          in = layer.channels;
          break;
        case Layer::kRelu: slices_[s]->push_back(name, std::make_shared<nn::ReLU>()); break;
        case Layer::kMaxPool:
          slices_[s]->push_back(name, std::make_shared<MaxPool>(layer.kernel, layer.stride));
          break;
        case Layer::kBlur: slices_[s]->push_back(name, std::make_shared<BlurDownsample>()); break;
      }
    }
    channels_[s] = in;
  }
  // Inputs too small for some layer fail there; find the smallest side that passes them all.
  auto fits = [&slices](int64_t n) {
    for (const auto& slice : slices)
      for (const Layer& layer : slice)
        if ((n = output_side(layer, n)) == 0) return false;
    return true;
  };
  while (!fits(min_size_)) ++min_size_;
}

std::vector<Tensor> PerceptualTrunk::forward(const Tensor& x) {
  std::vector<Tensor> out;
  Tensor h = x;
  for (auto& slice : slices_) {
    h = slice->forward(h);
    out.push_back(h);
  }
  return out;
}

}  // namespace vq::models
