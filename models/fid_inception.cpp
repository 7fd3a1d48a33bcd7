#include "models/fid_inception.h"

#include <cmath>
#include <filesystem>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/safetensors.h"

namespace vq::models {

namespace {

constexpr double kBatchNormEps = 0.001;  // torchvision's BasicConv2d

struct ConvSpec {
  std::string name;
  int64_t in, out, kh, kw, stride = 1, pad_h = 0, pad_w = 0;
};

// The network's convolutions in pytorch-fid's names and torchvision's shapes.
std::vector<ConvSpec> conv_specs() {
  std::vector<ConvSpec> s = {{"Conv2d_1a_3x3", 3, 32, 3, 3, 2},
                             {"Conv2d_2a_3x3", 32, 32, 3, 3},
                             {"Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1},
                             {"Conv2d_3b_1x1", 64, 80, 1, 1},
                             {"Conv2d_4a_3x3", 80, 192, 3, 3}};
  auto add = [&s](const std::string& block, std::vector<ConvSpec> convs) {
    for (ConvSpec& c : convs) {
      c.name = block + "." + c.name;
      s.push_back(c);
    }
  };
  auto mixed_a = [](int64_t in, int64_t pool) {
    return std::vector<ConvSpec>{{"branch1x1", in, 64, 1, 1},
                                 {"branch5x5_1", in, 48, 1, 1},
                                 {"branch5x5_2", 48, 64, 5, 5, 1, 2, 2},
                                 {"branch3x3dbl_1", in, 64, 1, 1},
                                 {"branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1},
                                 {"branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1},
                                 {"branch_pool", in, pool, 1, 1}};
  };
  auto mixed_c = [](int64_t c7) {
    return std::vector<ConvSpec>{{"branch1x1", 768, 192, 1, 1},
                                 {"branch7x7_1", 768, c7, 1, 1},
                                 {"branch7x7_2", c7, c7, 1, 7, 1, 0, 3},
                                 {"branch7x7_3", c7, 192, 7, 1, 1, 3, 0},
                                 {"branch7x7dbl_1", 768, c7, 1, 1},
                                 {"branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0},
                                 {"branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3},
                                 {"branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0},
                                 {"branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3},
                                 {"branch_pool", 768, 192, 1, 1}};
  };
  auto mixed_e = [](int64_t in) {
    return std::vector<ConvSpec>{{"branch1x1", in, 320, 1, 1},
                                 {"branch3x3_1", in, 384, 1, 1},
                                 {"branch3x3_2a", 384, 384, 1, 3, 1, 0, 1},
                                 {"branch3x3_2b", 384, 384, 3, 1, 1, 1, 0},
                                 {"branch3x3dbl_1", in, 448, 1, 1},
                                 {"branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1},
                                 {"branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1},
                                 {"branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0},
                                 {"branch_pool", in, 192, 1, 1}};
  };
  add("Mixed_5b", mixed_a(192, 32));
  add("Mixed_5c", mixed_a(256, 64));
  add("Mixed_5d", mixed_a(288, 64));
  add("Mixed_6a", {{"branch3x3", 288, 384, 3, 3, 2},
                   {"branch3x3dbl_1", 288, 64, 1, 1},
                   {"branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1},
                   {"branch3x3dbl_3", 96, 96, 3, 3, 2}});
  add("Mixed_6b", mixed_c(128));
  add("Mixed_6c", mixed_c(160));
  add("Mixed_6d", mixed_c(160));
  add("Mixed_6e", mixed_c(192));
  add("Mixed_7a", {{"branch3x3_1", 768, 192, 1, 1},
                   {"branch3x3_2", 192, 320, 3, 3, 2},
                   {"branch7x7x3_1", 768, 192, 1, 1},
                   {"branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3},
                   {"branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0},
                   {"branch7x7x3_4", 192, 192, 3, 3, 2}});
  add("Mixed_7b", mixed_e(1280));
  add("Mixed_7c", mixed_e(2048));
  return s;
}

// The pool branch of the A, C and E blocks: TensorFlow's average pool, whose divisor counts only
// the positions inside the image.
Tensor tf_avg_pool(const Tensor& x) { return avg_pool2d(x, 3, 1, 1, false); }

}  // namespace

std::vector<std::pair<std::string, Shape>> FidInception::weight_shapes() {
  std::vector<std::pair<std::string, Shape>> out;
  for (const ConvSpec& c : conv_specs()) {
    out.emplace_back(c.name + ".conv.weight", Shape{c.out, c.in, c.kh, c.kw});
    for (const char* bn : {"weight", "bias", "running_mean", "running_var"})
      out.emplace_back(c.name + ".bn." + bn, Shape{c.out});
  }
  return out;
}

FidInception::FidInception(const std::string& path, Device device) {
  const std::string how =
      "make it from pytorch-fid's pt_inception-2015-12-05-6726825d.pth with "
      "scripts/convert_fid_inception.py (docs/evaluation.md)";
  VQ_CHECK(std::filesystem::is_regular_file(path), "FID Inception weights {} not found: {}", path,
           how);
  const nn::SafetensorsFile file = nn::load_safetensors(path);
  // torchvision's ImageNet Inception has the same names and shapes but other weights: only the
  // converter, which refuses it, marks a file as the FID network.
  const auto network = file.metadata.find("vqgan.network");
  VQ_CHECK(network != file.metadata.end() && network->second == "fid-inception-v3",
           "{} is not the FID Inception network (its metadata lacks vqgan.network = "
           "fid-inception-v3): {}",
           path, how);
  std::map<std::string, Tensor> tensors(file.tensors.begin(), file.tensors.end());
  auto get = [&](const std::string& name, const Shape& shape) {
    const auto it = tensors.find(name);
    VQ_CHECK(it != tensors.end(), "{} is not the FID Inception network: {} is missing ({})", path,
             name, how);
    VQ_CHECK(it->second.shape() == shape && is_floating(it->second.dtype()),
             "{}: {} is {} {}, the FID Inception network needs a float32 or float64 {}", path, name,
             dtype_name(it->second.dtype()), shape_str(it->second.shape()), shape_str(shape));
    return it->second.to(DType::Float64);
  };
  NoGradGuard no_grad;
  for (const ConvSpec& c : conv_specs()) {
    // BN(conv(x)) = conv(x) * scale + (beta - mean * scale), scale = gamma / sqrt(var + eps):
    // folded in float64, then float32 like the network's own parameters.
    const Tensor w = get(c.name + ".conv.weight", {c.out, c.in, c.kh, c.kw});
    const Tensor gamma = get(c.name + ".bn.weight", {c.out}),
                 beta = get(c.name + ".bn.bias", {c.out});
    const Tensor running_mean = get(c.name + ".bn.running_mean", {c.out});
    const Tensor running_var = get(c.name + ".bn.running_var", {c.out});
    const Tensor scale = mul(gamma, rsqrt(add(running_var, kBatchNormEps)));
    const Tensor weight = mul(w, scale.view({c.out, 1, 1, 1}));
    const Tensor bias = sub(beta, mul(running_mean, scale));
    VQ_CHECK(std::isfinite(add(sum(abs(weight)), sum(abs(bias))).item()),
             "{}: layer {} holds non-finite values (or a running variance below -eps)", path,
             c.name);
    Conv folded;
    folded.weight = weight.to(DType::Float32).to(device);
    folded.bias = bias.to(DType::Float32).to(device);
    folded.stride = {c.stride, c.stride};
    folded.padding = {c.pad_h, c.pad_w};
    convs_.emplace(c.name, std::move(folded));
  }
}

Tensor FidInception::conv(const std::string& name, const Tensor& x) const {
  const Conv& c = convs_.at(name);
  return relu(conv2d(x, c.weight, c.bias, {c.stride, c.padding, {1, 1}}));
}

Tensor FidInception::mixed_a(const std::string& block, const Tensor& x) const {
  auto c = [&](const char* name, const Tensor& in) { return conv(block + "." + name, in); };
  const Tensor b5 = c("branch5x5_2", c("branch5x5_1", x));
  const Tensor b3 = c("branch3x3dbl_3", c("branch3x3dbl_2", c("branch3x3dbl_1", x)));
  return concat({c("branch1x1", x), b5, b3, c("branch_pool", tf_avg_pool(x))}, 1);
}

Tensor FidInception::mixed_b(const std::string& block, const Tensor& x) const {
  auto c = [&](const char* name, const Tensor& in) { return conv(block + "." + name, in); };
  const Tensor b3 = c("branch3x3dbl_3", c("branch3x3dbl_2", c("branch3x3dbl_1", x)));
  return concat({c("branch3x3", x), b3, max_pool2d(x, 3, 2)}, 1);
}

Tensor FidInception::mixed_c(const std::string& block, const Tensor& x) const {
  auto c = [&](const char* name, const Tensor& in) { return conv(block + "." + name, in); };
  const Tensor b7 = c("branch7x7_3", c("branch7x7_2", c("branch7x7_1", x)));
  Tensor b7dbl = c("branch7x7dbl_1", x);
  for (const char* name : {"branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"})
    b7dbl = c(name, b7dbl);
  return concat({c("branch1x1", x), b7, b7dbl, c("branch_pool", tf_avg_pool(x))}, 1);
}

Tensor FidInception::mixed_d(const std::string& block, const Tensor& x) const {
  auto c = [&](const char* name, const Tensor& in) { return conv(block + "." + name, in); };
  const Tensor b3 = c("branch3x3_2", c("branch3x3_1", x));
  Tensor b7 = c("branch7x7x3_1", x);
  for (const char* name : {"branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"}) b7 = c(name, b7);
  return concat({b3, b7, max_pool2d(x, 3, 2)}, 1);
}

Tensor FidInception::mixed_e(const std::string& block, const Tensor& x, bool max_pool) const {
  auto c = [&](const char* name, const Tensor& in) { return conv(block + "." + name, in); };
  const Tensor b3 = c("branch3x3_1", x);
  const Tensor b3dbl = c("branch3x3dbl_2", c("branch3x3dbl_1", x));
  // pytorch-fid keeps the ported graph's max pool in the last block (likely a slip in the
  // original, but it is what every published FID measured).
  const Tensor pooled = max_pool ? max_pool2d(x, 3, 1, 1) : tf_avg_pool(x);
  return concat(
      {c("branch1x1", x), c("branch3x3_2a", b3), c("branch3x3_2b", b3), c("branch3x3dbl_3a", b3dbl),
       c("branch3x3dbl_3b", b3dbl), c("branch_pool", pooled)},
      1);
}

Tensor FidInception::features(const Tensor& images) const {
  VQ_CHECK(images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3),
           "FID Inception: expected images [N, 1 or 3, H, W], got {}", shape_str(images.shape()));
  NoGradGuard no_grad;
  const Device device = convs_.begin()->second.weight.device();
  Tensor x = images.to(device).to(DType::Float32);
  if (x.size(1) == 1) x = x.expand({-1, 3, -1, -1});
  x = sub(mul(resize_bilinear(x, kInputSize, kInputSize), 2.0), 1.0);
  for (const char* name : {"Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"}) x = conv(name, x);
  x = max_pool2d(x, 3, 2);
  x = max_pool2d(conv("Conv2d_4a_3x3", conv("Conv2d_3b_1x1", x)), 3, 2);
  for (const char* name : {"Mixed_5b", "Mixed_5c", "Mixed_5d"}) x = mixed_a(name, x);
  x = mixed_b("Mixed_6a", x);
  for (const char* name : {"Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"}) x = mixed_c(name, x);
  x = mixed_d("Mixed_7a", x);
  x = mixed_e("Mixed_7c", mixed_e("Mixed_7b", x, false), true);
  return mean(x, {2, 3});
}

}  // namespace vq::models
