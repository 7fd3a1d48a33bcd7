#include "models/perceptual.h"

#include <charconv>
#include <cmath>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/activation.h"
#include "nn/checkpoint.h"
#include "nn/init.h"

namespace vq::models {

namespace {

// VGG's 2x2 max-pool between slices.
class MaxPool : public nn::UnaryModule {
 public:
  Tensor forward(const Tensor& x) override { return max_pool2d(x, 2, 2); }
};

// LPIPS's per-slice weighting: lin{k}.model.1 is a bias-free 1x1 conv C -> 1 (model.0, LPIPS's
// Dropout, has no weights and is not needed).
class NetLinLayer : public nn::Module {
 public:
  explicit NetLinLayer(int64_t channels) {
    auto model = register_module("model", std::make_shared<nn::Sequential>());
    conv = model->push_back("1", std::make_shared<nn::Conv2d>(channels, 1, 1, 1, 0, false));
    nn::init::constant_(conv->weight(), 1.0 / static_cast<double>(channels));
  }
  std::shared_ptr<nn::Conv2d> conv;
};

class ScalingLayer : public nn::Module {
 public:
  ScalingLayer() {
    // ImageNet statistics in [-1, 1] units, as LPIPS uses.
    shift = register_buffer("shift", from_vector<float>({-0.030f, -0.088f, -0.188f}, {1, 3, 1, 1}));
    scale = register_buffer("scale", from_vector<float>({0.458f, 0.448f, 0.450f}, {1, 3, 1, 1}));
  }
  Tensor shift, scale;
};

// torchvision indices of VGG16's convolutions per slice (each followed by a ReLU at index + 1;
// slices 2-5 start with a max-pool at the index before their first conv).
const std::vector<std::vector<int>> kSliceConvs = {
    {0, 2}, {5, 7}, {10, 12, 14}, {17, 19, 21}, {24, 26, 28}};
constexpr int64_t kSliceChannels[Vgg16Features::kSlices] = {64, 128, 256, 512, 512};

// Unit length over channels at every position: x / (||x||_2 + eps).
Tensor normalize_channels(const Tensor& x) {
  return div(x, add(sqrt(sum(mul(x, x), {1}, true)), 1e-10));
}

}  // namespace

int64_t Vgg16Features::channels(int slice) { return kSliceChannels[slice]; }

Vgg16Features::Vgg16Features() {
  int64_t in = 3;
  for (int s = 0; s < kSlices; ++s) {
    slices_[s] =
        register_module("slice" + std::to_string(s + 1), std::make_shared<nn::Sequential>());
    if (s > 0)
      slices_[s]->push_back(std::to_string(kSliceConvs[s][0] - 1), std::make_shared<MaxPool>());
    for (int index : kSliceConvs[s]) {
      slices_[s]->push_back(std::to_string(index),
                            std::make_shared<nn::Conv2d>(in, kSliceChannels[s], 3, 1, 1));
      slices_[s]->push_back(std::to_string(index + 1), std::make_shared<nn::ReLU>());
      in = kSliceChannels[s];
    }
  }
}

std::vector<Tensor> Vgg16Features::forward(const Tensor& x) {
  std::vector<Tensor> out;
  Tensor h = x;
  for (auto& slice : slices_) {
    h = slice->forward(h);
    out.push_back(h);
  }
  return out;
}

PerceptualLoss::PerceptualLoss() {
  auto scaling = register_module("scaling_layer", std::make_shared<ScalingLayer>());
  shift_ = scaling->shift;
  scale_ = scaling->scale;
  net_ = register_module("net", std::make_shared<Vgg16Features>());
  for (int s = 0; s < Vgg16Features::kSlices; ++s) {
    lins_.push_back(
        register_module("lin" + std::to_string(s), std::make_shared<NetLinLayer>(kSliceChannels[s]))
            ->conv);
  }
  requires_grad_(false);  // a fixed metric: gradients flow through it to the images only
  source_ = "random VGG16 features (untrained: no weights loaded), lin uniform 1/C";
}

std::vector<Tensor> PerceptualLoss::features(const Tensor& x) {
  VQ_CHECK(x.dim() == 4 && (x.size(1) == 1 || x.size(1) == 3),
           "PerceptualLoss: expected [N, 1 or 3, H, W], got {}", shape_str(x.shape()));
  const Tensor rgb = x.size(1) == 1 ? x.expand({x.size(0), 3, x.size(2), x.size(3)}) : x;
  return net_->forward(div(sub(rgb, shift_), scale_));
}

Tensor PerceptualLoss::forward(const Tensor& a, const Tensor& b) {
  VQ_CHECK(a.shape() == b.shape(), "PerceptualLoss: image batches {} and {} differ",
           shape_str(a.shape()), shape_str(b.shape()));
  // A side that needs no gradient (the real images) runs without recording a graph.
  auto features_of = [this](const Tensor& x) {
    if (x.requires_grad()) return features(x);
    NoGradGuard no_grad;
    return features(x);
  };
  const std::vector<Tensor> fa = features_of(a), fb = features_of(b);
  Tensor total;
  for (int s = 0; s < Vgg16Features::kSlices; ++s) {
    const Tensor diff = sub(normalize_channels(fa[s]), normalize_channels(fb[s]));
    const Tensor weighted = lins_[s]->forward(mul(diff, diff));  // [N, 1, h, w]
    const Tensor term = mean(weighted, {2, 3}, true);
    total = total.defined() ? add(total, term) : term;
  }
  return total;
}

void PerceptualLoss::load(const std::string& path) {
  const nn::SafetensorsFile file = nn::load_safetensors(path);
  nn::check_finite(file.tensors, path);
  nn::NamedTensors mapped;
  bool has_lin = false;
  for (const auto& [raw, t] : file.tensors) {
    std::string name = raw;
    for (const std::string prefix : {"loss.perceptual_loss.", "perceptual_loss."}) {
      if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
    }
    if (name.rfind("features.", 0) == 0) {  // torchvision: features.<index>.<weight|bias>
      // A name like features.x.weight (no index) matches no convolution and is ignored.
      int index = -1;
      std::from_chars(name.data() + 9, name.data() + name.size(), index);
      for (int s = 0; s < Vgg16Features::kSlices; ++s) {
        for (int conv : kSliceConvs[s]) {
          if (conv == index) name = fmt::format("net.slice{}.{}", s + 1, name.substr(9));
        }
      }
    }
    if (name.rfind("net.", 0) == 0 || name.rfind("lin", 0) == 0 ||
        name.rfind("scaling_layer.", 0) == 0) {
      has_lin = has_lin || name.rfind("lin", 0) == 0;
      mapped.emplace_back(name, t);
    }
  }
  // Every convolution of the feature net must be present; lin and scaling may keep their defaults.
  std::vector<std::string> missing;
  for (const auto& [name, t] : net_->state_dict()) {
    const std::string full = "net." + name;
    if (std::none_of(mapped.begin(), mapped.end(), [&](const auto& e) { return e.first == full; }))
      missing.push_back(full);
  }
  VQ_CHECK(
      missing.empty(),
      "{}: not usable as perceptual weights: missing {} of the VGG16 feature tensors (first: {}); "
      "expected LPIPS names (net.slice1.0.weight, ...) or torchvision names (features.0.weight, "
      "...)",
      path, missing.size(), missing.empty() ? "" : missing[0]);
  load_state_dict(mapped, /*strict=*/false);
  auto note = file.metadata.find("vqgan.perceptual_source");
  source_ = fmt::format("VGG16 weights from {}{} (lin: {})", path,
                        note == file.metadata.end() ? "" : " [" + note->second + "]",
                        has_lin ? "from the file" : "uniform 1/C");
}

}  // namespace vq::models
