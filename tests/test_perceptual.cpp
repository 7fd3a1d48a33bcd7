// The LPIPS-family perceptual distance: the blur downsample against direct loops and gradcheck,
// the three trunks' shapes, names and size limits, LPIPS's formula over the features, loading
// (torchvision names, ST-LPIPS files, damaged files), and the installed ST-LPIPS networks
// against the numbers of the Python package that publishes them.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "autograd/node.h"
#include "models/perceptual.h"
#include "nn/safetensors.h"
#include "test_util.h"

namespace vq::models {
namespace {

using test::allclose;

const std::string& temp_dir() {  // one per test process, made once
  static const std::string dir = test::temp_path("perceptual");
  return dir;
}

// Mirror index without repeating the edge: -1 -> 1, n -> n - 2.
int64_t mirror(int64_t k, int64_t n) { return k < 0 ? -k : (k >= n ? 2 * (n - 1) - k : k); }

TEST(BlurDownsample, IsTheMirrorPaddedBinomialFilterAtStride2) {
  const Tensor x = test::randn64({2, 3, 7, 6}, 5);
  const Tensor y = blur_downsample(x);
  // floor((n + 1) / 2) + 1 per side.
  ASSERT_EQ(y.shape(), (Shape{2, 3, 5, 4}));
  const double taps[3] = {1, 2, 1};
  const auto v = x.to_vector<double>();
  std::vector<double> expected;
  for (int64_t nc = 0; nc < 6; ++nc) {
    for (int64_t i = 0; i < 5; ++i) {
      for (int64_t j = 0; j < 4; ++j) {
        double s = 0;
        for (int u = 0; u < 3; ++u)
          for (int w = 0; w < 3; ++w)
            s += taps[u] * taps[w] / 16 *
                 v[(nc * 7 + mirror(2 * i + u - 2, 7)) * 6 + mirror(2 * j + w - 2, 6)];
        expected.push_back(s);
      }
    }
  }
  EXPECT_TRUE(allclose(y, from_vector(expected, y.shape()), 1e-12, 0));
  // The filter sums to 1: a constant image stays constant.
  EXPECT_TRUE(allclose(blur_downsample(full({1, 2, 4, 4}, 5.0)), full({1, 2, 3, 3}, 5.0), 1e-6));
  EXPECT_TRUE(test::grads_ok([](const auto& in) { return blur_downsample(in[0]); },
                             {test::randn64({2, 2, 5, 4}, 6)}));
  EXPECT_VQ_ERROR(blur_downsample(zeros({1, 1, 2, 5})), "below the size of the dim");
}

TEST(PerceptualTrunk, FeatureShapesNamesAndSmallestImages) {
  struct Case {
    PerceptualNet net;
    int64_t side, min_side;
    std::vector<int64_t> sides, channels;
    size_t tensors;
    const char* some_name;
  };
  const std::vector<Case> cases = {
      {PerceptualNet::Vgg16,
       32,
       16,
       {32, 16, 8, 4, 2},
       {64, 128, 256, 512, 512},
       26,
       "slice3.14.weight"},
      // The numbers the ST-LPIPS networks give in Python (64 -> 64, 33, 17, 9, 5; 30, 15, 8, 8,
      // 8) and their smallest inputs (18 and 21: a smaller one fails there too).
      {PerceptualNet::StVgg16,
       64,
       18,
       {64, 33, 17, 9, 5},
       {64, 128, 256, 512, 512},
       26,
       "slice5.32.bias"},
      {PerceptualNet::StAlexNet,
       64,
       21,
       {30, 15, 8, 8, 8},
       {64, 192, 384, 256, 256},
       10,
       "slice3.9.weight"},
  };
  NoGradGuard no_grad;
  for (const Case& c : cases) {
    SCOPED_TRACE(perceptual_net_name(c.net));
    Generator gen(0);
    PerceptualLoss lpips(c.net, gen);
    EXPECT_EQ(lpips.min_image_size(), c.min_side);
    const auto features = lpips.features(zeros({1, 1, c.side, c.side}));
    for (int s = 0; s < PerceptualTrunk::kSlices; ++s) {
      EXPECT_EQ(features[s].shape(), (Shape{1, c.channels[s], c.sides[s], c.sides[s]}));
    }
    const auto names = lpips.net().state_dict();
    EXPECT_EQ(names.size(), c.tensors);
    EXPECT_TRUE(std::any_of(names.begin(), names.end(),
                            [&](const auto& e) { return e.first == c.some_name; }));
    lpips.features(zeros({1, 3, c.min_side, c.min_side}));
    EXPECT_VQ_ERROR(lpips.features(zeros({1, 3, c.min_side, c.min_side - 1})),
                    fmt::format("{} needs images of at least {}x{} pixels, got {}x{}",
                                perceptual_net_name(c.net), c.min_side, c.min_side, c.min_side,
                                c.min_side - 1));
  }
}

// One layer by hand: at the first position a = (3, 4) and b = (0, 1) become (0.6, 0.8) and
// (0, 1); squared differences (0.36, 0.04) weighted by (0.5, 2) give 0.26. At the second
// position a = b: 0. The mean over the two positions: 0.13.
TEST(Perceptual, LayerDistanceByHand) {
  const Tensor a = from_vector<double>({3, 1, 4, 2}, {1, 2, 1, 2});  // channel-major: c0 = (3, 1)
  const Tensor b = from_vector<double>({0, 1, 1, 2}, {1, 2, 1, 2});
  const Tensor lin = from_vector<double>({0.5, 2.0}, {1, 2, 1, 1});
  const Tensor d = layer_distance(a, b, lin);
  ASSERT_EQ(d.shape(), (Shape{1, 1, 1, 1}));
  EXPECT_NEAR(d.item(), 0.13, 1e-9);
  EXPECT_TRUE(test::grads_ok([&](const auto& in) { return layer_distance(in[0], in[1], lin); },
                             {test::randn64({2, 2, 2, 3}, 7), test::randn64({2, 2, 2, 3}, 8)}));
}

TEST(Perceptual, ZeroForIdenticalImagesAndGradientOnlyToTheSecond) {
  Generator gen(0);
  PerceptualLoss lpips(PerceptualNet::Vgg16, gen);
  const Tensor a = test::randn32({2, 1, 32, 32}, 1), b = test::randn32({2, 1, 32, 32}, 2);
  EXPECT_NEAR(max(lpips.forward(a, a)).item(), 0.0, 1e-9);
  Tensor bb = b.detach().requires_grad_();
  const Tensor d = lpips.forward(a, bb);
  EXPECT_EQ(d.shape(), (Shape{2, 1, 1, 1}));
  EXPECT_GT(min(d).item(), 0.0);
  sum(d).backward();
  EXPECT_TRUE(bb.grad().defined());
  for (const auto& p : lpips.parameters()) EXPECT_FALSE(p.grad().defined());
  EXPECT_NE(lpips.describe().find("random vgg16"), std::string::npos);
}

// The distance is LPIPS's formula over the net's features, recomputed here with plain loops in
// float64: per slice, sum_c w_c (a_c/|a| - b_c/|b|)^2 averaged over positions, summed over
// slices, with lin weights set to distinct known values.
TEST(Perceptual, DistanceIsTheLpipsFormulaOverItsFeatures) {
  for (PerceptualNet net :
       {PerceptualNet::Vgg16, PerceptualNet::StVgg16, PerceptualNet::StAlexNet}) {
    SCOPED_TRACE(perceptual_net_name(net));
    Generator gen(0);
    PerceptualLoss lpips(net, gen);
    {
      NoGradGuard no_grad;
      for (auto& [name, p] : lpips.named_parameters()) {
        if (name.rfind("lin", 0) != 0) continue;
        const int64_t C = p.size(1);
        std::vector<float> w(C);
        for (int64_t c = 0; c < C; ++c) w[c] = static_cast<float>((c % 7) + 1) / C;
        p.copy_(from_vector(w, p.shape()));
      }
    }
    const Tensor a = clamp(test::randn32({2, 3, 32, 32}, 3), -1.0, 1.0);
    const Tensor b = clamp(test::randn32({2, 3, 32, 32}, 4), -1.0, 1.0);
    const std::vector<Tensor> fa = lpips.features(a), fb = lpips.features(b);
    std::vector<double> expected(2, 0.0);
    for (int s = 0; s < PerceptualTrunk::kSlices; ++s) {
      const int64_t C = fa[s].size(1), HW = fa[s].size(2) * fa[s].size(3);
      const auto va = fa[s].to_vector<double>(), vb = fb[s].to_vector<double>();
      for (int64_t n = 0; n < 2; ++n) {
        for (int64_t q = 0; q < HW; ++q) {
          auto at = [&](const std::vector<double>& v, int64_t c) {
            return v[(n * C + c) * HW + q];
          };
          double na = 0, nb = 0;
          for (int64_t c = 0; c < C; ++c) {
            na += at(va, c) * at(va, c);
            nb += at(vb, c) * at(vb, c);
          }
          na = std::sqrt(na) + 1e-10;
          nb = std::sqrt(nb) + 1e-10;
          for (int64_t c = 0; c < C; ++c) {
            const double d = at(va, c) / na - at(vb, c) / nb;
            expected[n] += static_cast<double>((c % 7) + 1) / C * d * d / HW;
          }
        }
      }
    }
    EXPECT_TRUE(allclose(lpips.forward(a, b), from_vector(expected, {2, 1, 1, 1}), 1e-6, 1e-4));
    EXPECT_GT(expected[0], 0.0);
    // A grey image is the same image repeated to three channels.
    const Tensor grey = a.narrow(1, 0, 1).contiguous();
    const Tensor grey3 = concat({grey, grey, grey}, 1);
    EXPECT_TRUE(allclose(lpips.features(grey)[2], lpips.features(grey3)[2], 1e-6));
  }
}

TEST(Perceptual, LoadsTorchvisionNamesAndRejectsIncompleteFiles) {
  Generator gen(0);
  PerceptualLoss source(PerceptualNet::Vgg16, gen);
  nn::NamedTensors torchvision;
  // Rename net.sliceK.N.* to torchvision's features.N.*
  for (const auto& [name, t] : source.net().state_dict()) {
    const size_t dot = name.find('.');
    torchvision.emplace_back("features." + name.substr(dot + 1), add(t, 0.01));
  }
  const std::string dir = temp_dir();
  nn::save_safetensors(dir + "/vgg.safetensors", torchvision,
                       {{"vqgan.perceptual_source", "test"}});
  const auto loaded = PerceptualLoss::from_weights(dir + "/vgg.safetensors");
  EXPECT_EQ(loaded->net_kind(), PerceptualNet::Vgg16);
  EXPECT_TRUE(allclose(loaded->net().state_dict()[0].second,
                       add(source.net().state_dict()[0].second, 0.01)));
  EXPECT_NE(loaded->describe().find("[test] (lin: uniform 1/C)"), std::string::npos)
      << loaded->describe();
  torchvision.pop_back();
  // A torchvision-style name without an index (a damaged or foreign file) is a clear error too,
  // not a parse exception.
  torchvision.emplace_back("features.x.weight", zeros({1}));
  nn::save_safetensors(dir + "/partial.safetensors", torchvision);
  EXPECT_VQ_ERROR(PerceptualLoss(PerceptualNet::Vgg16, gen).load(dir + "/partial.safetensors"),
                  "not usable as vgg16 perceptual weights: missing 1 of its feature tensors");
  // Damaged values are refused naming the tensor.
  torchvision.back().second = full({1}, NAN);
  nn::save_safetensors(dir + "/nan.safetensors", torchvision);
  EXPECT_VQ_ERROR(PerceptualLoss(PerceptualNet::Vgg16, gen).load(dir + "/nan.safetensors"),
                  "tensor 'features.x.weight' holds 1 non-finite values");
}

// A file in the ST-LPIPS layout (as scripts/convert_stlpips.py writes it) is recognised by its
// blur filters, which must be the binomial filter the network computes itself.
TEST(Perceptual, RecognisesShiftTolerantFilesAndChecksTheirBlurFilters) {
  Generator gen(0);
  PerceptualLoss source(PerceptualNet::StAlexNet, gen);
  nn::NamedTensors file;
  for (const auto& [name, t] : source.state_dict()) file.emplace_back(name, add(t, 0.5));
  for (const auto& [name, channels] : std::vector<std::pair<std::string, int64_t>>{
           {"net.slice1.1.filt", 64}, {"net.slice2.4.filt", 64}, {"net.slice3.8.filt", 192}}) {
    file.emplace_back(name, binomial_blur_filter().view({1, 1, 3, 3}).expand({channels, 1, 3, 3}));
  }
  const std::string dir = temp_dir();
  nn::save_safetensors(dir + "/alex.safetensors", file);
  const auto loaded = PerceptualLoss::from_weights(dir + "/alex.safetensors");
  EXPECT_EQ(loaded->net_kind(), PerceptualNet::StAlexNet);
  const nn::NamedTensors state = loaded->state_dict();  // the names and order of `source`
  for (size_t i = 0; i < state.size(); ++i)
    EXPECT_TRUE(allclose(state[i].second, file[i].second)) << state[i].first;
  EXPECT_NE(loaded->describe().find("stlpips-alex from"), std::string::npos);

  file.back().second = full({192, 1, 3, 3}, 1.0 / 9);  // a box filter
  nn::save_safetensors(dir + "/box.safetensors", file);
  EXPECT_VQ_ERROR(PerceptualLoss::from_weights(dir + "/box.safetensors"),
                  "blur filter 'net.slice3.8.filt' is not the 3x3 binomial");
  nn::save_safetensors(dir + "/named.safetensors", file, {{"vqgan.perceptual_net", "resnet"}});
  EXPECT_VQ_ERROR(PerceptualLoss::from_weights(dir + "/named.safetensors"),
                  "unknown perceptual network 'resnet' in its metadata");
  EXPECT_VQ_ERROR(PerceptualLoss::from_weights(dir + "/none.safetensors"), "does not exist");
  setenv("VQ_WEIGHTS_DIR", dir.c_str(), 1);
  EXPECT_EQ(perceptual_weights_file("stlpips-alex"), dir + "/stlpips_alex.safetensors");
  EXPECT_VQ_ERROR(PerceptualLoss::from_weights("stlpips-alex"),
                  "scripts/setup.sh installs the ST-LPIPS weights there");
  unsetenv("VQ_WEIGHTS_DIR");
}

// The images the reference values were made with (in Python, float64 then float32, clamped).
Tensor formula_image(int64_t H, int64_t W, double phase) {
  std::vector<float> v;
  for (int c = 0; c < 3; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        v.push_back(static_cast<float>(
            std::sin(0.07 * (c + 1) * x + 0.05 * (c + 2) * y + phase + c) *
            std::cos(0.031 * x * y / static_cast<double>(std::max(H, W)) + 0.5 * c)));
  return clamp(from_vector(v, {1, 3, H, W}), -1.0, 1.0);
}

std::shared_ptr<PerceptualLoss> installed(const std::string& name) {
  if (!std::filesystem::exists(perceptual_weights_file(name))) return nullptr;
  return PerceptualLoss::from_weights(name);
}

// lpips-vgg is never downloaded: without the converted file the error says how to make it.
TEST(Lpips, MissingWeightsSayHowToMakeThem) {
  const std::string dir = temp_dir() + "/no_weights";
  std::filesystem::create_directories(dir);
  ::setenv("VQ_WEIGHTS_DIR", dir.c_str(), 1);
  EXPECT_EQ(perceptual_weights_file("lpips-vgg"), dir + "/lpips_vgg.safetensors");
  EXPECT_VQ_ERROR(PerceptualLoss::from_weights("lpips-vgg"),
                  "make it from your torchvision VGG16 weights with `scripts/convert_lpips.py "
                  "VGG16.pth " +
                      dir + "`");
  ::unsetenv("VQ_WEIGHTS_DIR");
}

// Distances the Python package (stlpips-pytorch 0.0.2, torch 1.13, float32 on the CPU) gives for
// these images; float32 sums in another order differ in the 6th digit, hence rtol 1e-4.
TEST(StLpips, InstalledNetworksGiveThePublishedPackagesDistances) {
  const auto vgg = installed("stlpips-vgg"), alex = installed("stlpips-alex");
  if (!vgg || !alex) GTEST_SKIP() << "ST-LPIPS weights not installed (scripts/setup.sh)";
  EXPECT_EQ(vgg->net_kind(), PerceptualNet::StVgg16);
  EXPECT_NE(vgg->describe().find("stlpips-pytorch 0.0.2"), std::string::npos) << vgg->describe();
  NoGradGuard no_grad;
  auto distance = [](PerceptualLoss& net, const Tensor& a, const Tensor& b) {
    return net.forward(a, b).item();
  };
  const Tensor a64 = formula_image(64, 64, 0), b64 = formula_image(64, 64, 0.9);
  const Tensor a_wide = formula_image(63, 65, 0), b_wide = formula_image(63, 65, 0.9);
  EXPECT_NEAR(distance(*vgg, a64, b64), 0.222035095, 0.222035095 * 1e-4);
  EXPECT_NEAR(distance(*vgg, a_wide, b_wide), 0.228260294, 0.228260294 * 1e-4);
  EXPECT_NEAR(distance(*alex, a64, b64), 0.157135785, 0.157135785 * 1e-4);
  EXPECT_NEAR(distance(*alex, a_wide, b_wide), 0.161524355, 0.161524355 * 1e-4);
  EXPECT_EQ(distance(*vgg, a64, a64), 0.0);
  // A one-pixel diagonal shift of a 256x256 image: the distance shift tolerance is about.
  const Tensor a256 = formula_image(256, 256, 0);
  const Tensor shifted = a256.narrow(2, 1, 255).narrow(3, 1, 255).contiguous();
  const Tensor unshifted = a256.narrow(2, 0, 255).narrow(3, 0, 255).contiguous();
  EXPECT_NEAR(distance(*vgg, shifted, unshifted), 0.0370660573, 0.0370660573 * 1e-4);
  EXPECT_NEAR(distance(*alex, shifted, unshifted), 0.0174248517, 0.0174248517 * 1e-4);
}

#ifdef VQ_PYTHON
// The same distances from the package itself, run now on other images (random, grey and RGB,
// batches of 2): the package is imported with stubs for two modules it imports but never uses.
TEST(StLpips, MatchesThePythonPackageOnRandomImages) {
  const auto vgg = installed("stlpips-vgg"), alex = installed("stlpips-alex");
  if (!vgg || !alex) GTEST_SKIP() << "ST-LPIPS weights not installed (scripts/setup.sh)";
  const std::string dir = temp_dir();
  const nn::NamedTensors images = {{"rgb_a", clamp(test::randn32({2, 3, 40, 48}, 11), -1.0, 1.0)},
                                   {"rgb_b", clamp(test::randn32({2, 3, 40, 48}, 12), -1.0, 1.0)},
                                   {"grey_a", tanh(test::randn32({2, 1, 28, 28}, 13))},
                                   {"grey_b", tanh(test::randn32({2, 1, 28, 28}, 14))}};
  nn::save_safetensors(dir + "/images.safetensors", images);
  std::ofstream(dir + "/stlpips_check.py")
      << "import sys, types\n"
         "for name, attr in (('IPython', 'embed'), ('torchsummary', 'summary')):\n"
         "    m = types.ModuleType(name); setattr(m, attr, lambda *a, **k: None)\n"
         "    sys.modules[name] = m\n"
         "try:\n"
         "    import torchvision\n"
         "except ImportError:\n"
         "    tv = types.ModuleType('torchvision'); tv.models = types.ModuleType('tv.models')\n"
         "    sys.modules['torchvision'] = tv; sys.modules['torchvision.models'] = tv.models\n"
         "try:\n"
         "    from stlpips_pytorch import stlpips\n"
         "except ImportError as e:\n"
         "    print(e); sys.exit(77)\n"
         "import torch\n"
         "from safetensors.torch import load_file, save_file\n"
         "d = load_file(sys.argv[1] + '/images.safetensors')\n"
         "out = {}\n"
         "with torch.no_grad():\n"
         "    for net in ('vgg', 'alex'):\n"
         "        m = stlpips.LPIPS(net=net, variant='shift_tolerant', verbose=False)\n"
         "        for k in ('rgb', 'grey'):\n"
         "            a, b = d[k + '_a'], d[k + '_b']\n"
         "            if a.shape[1] == 1: a, b = a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1)\n"
         "            out[net + '_' + k] = m(a, b).reshape(-1).contiguous()\n"
         "save_file(out, sys.argv[1] + '/distances.safetensors')\n";
  const std::string cmd = fmt::format("{} {}/stlpips_check.py {}", VQ_PYTHON, dir, dir);
  const int status = std::system(cmd.c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
    GTEST_SKIP() << "the stlpips_pytorch package is not installed in " << VQ_PYTHON;
  ASSERT_EQ(status, 0) << cmd;
  const nn::SafetensorsFile theirs = nn::load_safetensors(dir + "/distances.safetensors");
  NoGradGuard no_grad;
  for (const auto& [name, expected] : theirs.tensors) {
    PerceptualLoss& net = name.rfind("vgg", 0) == 0 ? *vgg : *alex;
    const std::string kind = name.substr(name.find('_') + 1);
    Tensor a, b;
    for (const auto& [image, t] : images) {
      if (image == kind + "_a") a = t;
      if (image == kind + "_b") b = t;
    }
    const Tensor ours = net.forward(a, b).reshape({-1});
    EXPECT_TRUE(allclose(ours, expected, 0, 1e-4)) << name;
    EXPECT_GT(min(expected).item(), 0.01) << name;
  }
  EXPECT_EQ(theirs.tensors.size(), 4u);
}

// The standard LPIPS (v0.1, VGG16) against PyPI's lpips package: its LPIPS(net='vgg',
// pnet_rand=True) with the package's own lin weights and a VGG16 backbone drawn by PyTorch's
// default initialisation under torch.manual_seed(0) (torchvision's VGG16 feature layers, rebuilt
// in the script: Debian's torch has no torchvision). The backbone is saved as a torchvision VGG16
// file, scripts/convert_lpips.py turns it into our weights, and both compute the distances of
// random grey and RGB images (batches of 2) in float32 on the CPU: within 1e-4 relative.
TEST(Lpips, MatchesThePythonPackageWithRandomBackboneWeights) {
  const std::string dir = temp_dir();
  const nn::NamedTensors images = {{"rgb_a", clamp(test::randn32({2, 3, 40, 48}, 21), -1.0, 1.0)},
                                   {"rgb_b", clamp(test::randn32({2, 3, 40, 48}, 22), -1.0, 1.0)},
                                   {"grey_a", tanh(test::randn32({2, 1, 36, 36}, 23))},
                                   {"grey_b", tanh(test::randn32({2, 1, 36, 36}, 24))}};
  nn::save_safetensors(dir + "/images.safetensors", images);
  std::ofstream(dir + "/lpips_check.py")
      << "import subprocess, sys, types\n"
         "import torch, torch.nn as nn\n"
         "def fake_module(name, **attrs):  # what lpips imports but this check never calls\n"
         "    m = types.ModuleType(name); m.__dict__.update(attrs); sys.modules[name] = m; return "
         "m\n"
         "class VGG16(nn.Module):  # torchvision's VGG16 feature layers, same indices\n"
         "    def __init__(self):\n"
         "        super().__init__(); layers, c = [], 3\n"
         "        for v in [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M',\n"
         "                  512, 512, 512, 'M']:\n"
         "            if v == 'M': layers.append(nn.MaxPool2d(2, 2))\n"
         "            else: layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]; c = "
         "v\n"
         "        self.features = nn.Sequential(*layers)\n"
         "def vgg16(pretrained=False, **kwargs):\n"
         "    assert not pretrained; return VGG16()\n"
         "tv = fake_module('torchvision')\n"
         "tv.models = fake_module('torchvision.models', vgg16=vgg16)\n"
         "fake_module('scipy').ndimage = fake_module('scipy.ndimage', zoom=None)\n"
         "fake_module('tqdm', tqdm=None)\n"
         "try:\n"
         "    import lpips\n"
         "except ImportError as e:\n"
         "    print(e); sys.exit(77)\n"
         "from safetensors.torch import load_file, save_file\n"
         "out_dir, convert = sys.argv[1], sys.argv[2]\n"
         "torch.manual_seed(0)\n"
         "m = lpips.LPIPS(net='vgg', pretrained=True, pnet_rand=True, verbose=False).eval()\n"
         "backbone = {}\n"
         "for k in range(1, 6):\n"
         "    for name, t in getattr(m.net, 'slice%d' % k).state_dict().items():\n"
         "        backbone['features.' + name] = t\n"
         "torch.save(backbone, out_dir + '/vgg16_random.pth')\n"
         "subprocess.run([sys.executable, convert, out_dir + '/vgg16_random.pth', out_dir], "
         "check=True)\n"
         "d, out = load_file(out_dir + '/images.safetensors'), {}\n"
         "with torch.no_grad():\n"
         "    for k in ('rgb', 'grey'):\n"
         "        a, b = d[k + '_a'], d[k + '_b']\n"
         "        if a.shape[1] == 1: a, b = a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1)\n"
         "        out[k] = m(a, b).reshape(-1).contiguous()\n"
         "save_file(out, out_dir + '/distances.safetensors')\n";
  const std::string cmd =
      fmt::format("{} {}/lpips_check.py {} {}", VQ_PYTHON, dir, dir, VQ_CONVERT_LPIPS);
  const int status = std::system(cmd.c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
    GTEST_SKIP() << "the lpips package is not installed in " << VQ_PYTHON;
  ASSERT_EQ(status, 0) << cmd;
  const auto ours = PerceptualLoss::from_weights(dir + "/lpips_vgg.safetensors");
  EXPECT_EQ(ours->net_kind(), PerceptualNet::Vgg16);
  EXPECT_NE(ours->describe().find("lin from lpips 0.1.4"), std::string::npos) << ours->describe();
  EXPECT_NE(ours->describe().find("(lin: from the file)"), std::string::npos) << ours->describe();
  const nn::SafetensorsFile theirs = nn::load_safetensors(dir + "/distances.safetensors");
  NoGradGuard no_grad;
  for (const auto& [kind, expected] : theirs.tensors) {
    Tensor a, b;
    for (const auto& [image, t] : images) {
      if (image == kind + "_a") a = t;
      if (image == kind + "_b") b = t;
    }
    EXPECT_TRUE(allclose(ours->forward(a, b).reshape({-1}), expected, 0, 1e-4)) << kind;
    EXPECT_GT(min(expected).item(), 1e-3) << kind;
  }
  EXPECT_EQ(theirs.tensors.size(), 2u);
}
#endif

}  // namespace
}  // namespace vq::models
