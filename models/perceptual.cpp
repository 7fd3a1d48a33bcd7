#include "models/perceptual.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/checkpoint.h"
#include "nn/init.h"

namespace vq::models {

namespace {

// LPIPS's per-slice weighting: lin{k}.model.1 is a bias-free 1x1 conv C -> 1 (model.0, LPIPS's
// Dropout, has no weights and is not needed).
class NetLinLayer : public nn::Module {
 public:
  // The weight is set to 1/C; gen only feeds Conv2d's default draw, which this overwrites.
  NetLinLayer(int64_t channels, Generator& gen) {
    auto model = register_module("model", std::make_shared<nn::Sequential>());
    conv = model->push_back("1", std::make_shared<nn::Conv2d>(gen, channels, 1, 1, 1, 0, false));
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

// The network a weights file holds: its vqgan.perceptual_net metadata, else its names (the
// blur filters only the shift-tolerant networks have).
PerceptualNet network_of(const nn::SafetensorsFile& file, const std::string& path) {
  if (auto it = file.metadata.find("vqgan.perceptual_net"); it != file.metadata.end()) {
    for (PerceptualNet net :
         {PerceptualNet::Vgg16, PerceptualNet::StVgg16, PerceptualNet::StAlexNet}) {
      if (perceptual_net_name(net) == it->second) return net;
    }
    throw Error(
        fmt::format("{}: unknown perceptual network '{}' in its metadata", path, it->second));
  }
  auto has = [&file](const std::string& suffix) {
    return std::any_of(file.tensors.begin(), file.tensors.end(), [&](const auto& e) {
      return e.first.size() >= suffix.size() &&
             e.first.compare(e.first.size() - suffix.size(), suffix.size(), suffix) == 0;
    });
  };
  if (has("net.slice2.5.filt")) return PerceptualNet::StVgg16;
  if (has("net.slice1.1.filt")) return PerceptualNet::StAlexNet;
  return PerceptualNet::Vgg16;
}

}  // namespace

Tensor layer_distance(const Tensor& fa, const Tensor& fb, const Tensor& lin_weight) {
  // Unit length over channels at every position: f / (||f||_2 + eps).
  auto unit = [](const Tensor& f) { return div(f, add(sqrt(sum(mul(f, f), {1}, true)), 1e-10)); };
  const Tensor diff = sub(unit(fa), unit(fb));
  const Tensor weighted = conv2d(mul(diff, diff), lin_weight);  // [N, 1, h, w]
  return mean(weighted, {2, 3}, true);
}

std::string perceptual_weights_file(const std::string& name_or_path) {
  if (name_or_path != "stlpips-vgg" && name_or_path != "stlpips-alex" &&
      name_or_path != "lpips-vgg") {
    return name_or_path;
  }
  // stlpips-vgg -> stlpips_vgg.safetensors, lpips-vgg -> lpips_vgg.safetensors
  std::string file = name_or_path + ".safetensors";
  file[file.find('-')] = '_';
  if (const char* dir = std::getenv("VQ_WEIGHTS_DIR"); dir != nullptr && *dir != '\0')
    return (std::filesystem::path(dir) / file).string();
  // Programs live in <build>/bin and scripts/setup.sh writes the weights to <build>/weights.
  std::error_code ignored;
  const std::filesystem::path program = std::filesystem::read_symlink("/proc/self/exe", ignored);
  return (program.parent_path().parent_path() / "weights" / file).string();
}

PerceptualLoss::PerceptualLoss(PerceptualNet net, Generator& gen) : kind_(net) {
  auto scaling = register_module("scaling_layer", std::make_shared<ScalingLayer>());
  shift_ = scaling->shift;
  scale_ = scaling->scale;
  net_ = register_module("net", std::make_shared<PerceptualTrunk>(net, gen));
  for (int s = 0; s < PerceptualTrunk::kSlices; ++s) {
    lins_.push_back(register_module("lin" + std::to_string(s),
                                    std::make_shared<NetLinLayer>(net_->channels(s), gen))
                        ->conv);
  }
  requires_grad_(false);  // a fixed metric: gradients flow through it to the images only
  source_ = fmt::format("random {} features (untrained: no weights loaded), lin uniform 1/C",
                        perceptual_net_name(net));
}

std::shared_ptr<PerceptualLoss> PerceptualLoss::from_weights(const std::string& name_or_path) {
  const std::string path = perceptual_weights_file(name_or_path);
  if (path != name_or_path && name_or_path == "lpips-vgg") {
    VQ_CHECK(std::filesystem::exists(path),
             "perceptual weights 'lpips-vgg': {} does not exist; make it from your torchvision "
             "VGG16 weights with `scripts/convert_lpips.py VGG16.pth {}` (nothing is downloaded; "
             "run it with build/venv/bin/python, which has the lpips package), or set "
             "VQ_WEIGHTS_DIR to the folder that holds lpips_vgg.safetensors",
             path, std::filesystem::path(path).parent_path().string());
  } else if (path != name_or_path) {
    VQ_CHECK(std::filesystem::exists(path),
             "perceptual weights '{}': {} does not exist; scripts/setup.sh installs the ST-LPIPS "
             "weights there (from PyPI's stlpips-pytorch), or set VQ_WEIGHTS_DIR to their folder",
             name_or_path, path);
  }
  const nn::SafetensorsFile file = nn::load_safetensors(path);
  // Every tensor is replaced by the file's: the random draws are only placeholders.
  Generator placeholder(0);
  auto loss = std::make_shared<PerceptualLoss>(network_of(file, path), placeholder);
  loss->load_file(file, path);
  return loss;
}

std::vector<Tensor> PerceptualLoss::features(const Tensor& x) {
  VQ_CHECK(x.dim() == 4 && (x.size(1) == 1 || x.size(1) == 3),
           "PerceptualLoss: expected [N, 1 or 3, H, W], got {}", shape_str(x.shape()));
  VQ_CHECK(x.size(2) >= min_image_size() && x.size(3) >= min_image_size(),
           "PerceptualLoss: {} needs images of at least {}x{} pixels, got {}x{}",
           perceptual_net_name(kind_), min_image_size(), min_image_size(), x.size(2), x.size(3));
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
  for (int s = 0; s < PerceptualTrunk::kSlices; ++s) {
    const Tensor term = layer_distance(fa[s], fb[s], lins_[s]->weight());
    total = total.defined() ? add(total, term) : term;
  }
  return total;
}

void PerceptualLoss::load(const std::string& path) { load_file(nn::load_safetensors(path), path); }

void PerceptualLoss::load_file(const nn::SafetensorsFile& file, const std::string& path) {
  nn::check_finite(file.tensors, path);
  const nn::NamedTensors trunk = net_->state_dict();
  nn::NamedTensors mapped;
  bool has_lin = false;
  for (const auto& [raw, t] : file.tensors) {
    std::string name = raw;
    for (const std::string prefix : {"loss.perceptual_loss.", "perceptual_loss."}) {
      if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
    }
    if (name.rfind("features.", 0) == 0) {  // torchvision: features.<index>.<weight|bias>
      // The trunk's layers keep torchvision's indices; a name like features.x.weight (no index)
      // matches no layer and is ignored.
      int index = -1;
      std::from_chars(name.data() + 9, name.data() + name.size(), index);
      const std::string tail =
          name.substr(name.find('.', 9) == std::string::npos ? name.size() : name.find('.', 9));
      for (const auto& [own, unused] : trunk) {
        if (own.substr(own.find('.') + 1) == std::to_string(index) + tail) name = "net." + own;
      }
    }
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".filt") == 0) {
      // The blur filters are fixed, not learnt: check the file has the ones we compute.
      const bool binomial =
          t.dim() == 4 && t.size(1) == 1 && t.size(2) == 3 && t.size(3) == 3 &&
          max(abs(sub(t.to(DType::Float32),
                      binomial_blur_filter().view({1, 1, 3, 3}).expand(t.shape()))))
                  .item() <= 1e-7;
      VQ_CHECK(binomial,
               "{}: blur filter '{}' is not the 3x3 binomial [1,2,1]x[1,2,1]/16 this network "
               "uses",
               path, raw);
      continue;
    }
    if (name.rfind("net.", 0) == 0 || name.rfind("lin", 0) == 0 ||
        name.rfind("scaling_layer.", 0) == 0) {
      has_lin = has_lin || name.rfind("lin", 0) == 0;
      mapped.emplace_back(name, t);
    }
  }
  // Every convolution of the feature net must be present; lin and scaling may keep their defaults.
  std::vector<std::string> missing;
  for (const auto& [name, t] : trunk) {
    const std::string full = "net." + name;
    if (std::none_of(mapped.begin(), mapped.end(), [&](const auto& e) { return e.first == full; }))
      missing.push_back(full);
  }
  VQ_CHECK(missing.empty(),
           "{}: not usable as {} perceptual weights: missing {} of its feature tensors (first: "
           "{}); expected LPIPS names (net.slice1.0.weight, ...){}",
           path, perceptual_net_name(kind_), missing.size(), missing.empty() ? "" : missing[0],
           kind_ == PerceptualNet::Vgg16 ? " or torchvision names (features.0.weight, ...)" : "");
  load_state_dict(mapped, /*strict=*/false);
  auto note = file.metadata.find("vqgan.perceptual_source");
  source_ = fmt::format("{} from {}{} (lin: {})", perceptual_net_name(kind_), path,
                        note == file.metadata.end() ? "" : " [" + note->second + "]",
                        has_lin ? "from the file" : "uniform 1/C");
}

}  // namespace vq::models
