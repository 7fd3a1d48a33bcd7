// VQGAN architecture: taming's parameter names and counts for both reference configs (counted by
// an independent formula), shapes, attention against its definition, gradients reaching every
// parameter, the PatchGAN and the loss composition (the perceptual distance: test_perceptual).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include "models/blocks.h"
#include "models/encoder.h"
#include "models/fsq.h"
#include "models/patch_discriminator.h"
#include "models/perceptual.h"
#include "models/vector_quantizer.h"
#include "models/vqgan.h"
#include "models/vqgan_loss.h"
#include "nn/optim/optimizer.h"
#include "nn/safetensors.h"
#include "test_util.h"

namespace vq::models {
namespace {

using test::allclose;

bool has_name(const nn::NamedTensors& named, const std::string& name) {
  return std::any_of(named.begin(), named.end(), [&](const auto& e) { return e.first == name; });
}

// The seeding contract: a module that creates parameters draws them from the Generator (or seed)
// it is given and from nothing else, so two instances built from equal seeds hold the same bits
// even when the process-wide generator moved in between, and another seed gives other weights.
::testing::AssertionResult built_from_seed_alone(
    const std::function<std::shared_ptr<nn::Module>(uint64_t seed)>& build) {
  manual_seed(1);
  const nn::NamedTensors a = build(3)->state_dict();
  manual_seed(2);
  (void)randn({16}, default_generator());
  const nn::NamedTensors b = build(3)->state_dict(), other = build(4)->state_dict();
  if (a.empty()) return ::testing::AssertionFailure() << "no state";
  bool any_differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (auto r = allclose(b[i].second, a[i].second, 0, 0); !r)
      return r << " (" << a[i].first << ")";
    any_differs |= !allclose(other[i].second, a[i].second, 0, 0);
  }
  if (!any_differs) return ::testing::AssertionFailure() << "seed 4 built the same weights as 3";
  return ::testing::AssertionSuccess();
}

TEST(Seeding, EveryModuleWithParametersDrawsFromItsOwnSeed) {
  ModelConfig c = model_config_by_name("fmnist");
  c.ch = 32;
  QuantizerConfig projected;  // with projections in and out
  projected.n_embed = 16;
  projected.codebook_dim = 4;
  QuantizerConfig simvq = projected;
  simvq.codebook = "simvq";
  simvq.dead_code_reset = "off";  // SimVQ cannot set single codes
  simvq.low_usage_reset_interval = 0;
  QuantizerConfig fsq;
  fsq.kind = "fsq";
  fsq.fsq_levels = {5, 3};
  LossConfig random_perceptual;
  random_perceptual.perceptual_weights = "random";
  using M = std::shared_ptr<nn::Module>;
  const std::vector<std::pair<std::string, std::function<M(uint64_t)>>> cases = {
      {"ResnetBlock",
       [](uint64_t s) {
         Generator g(s);
         return M(std::make_shared<ResnetBlock>(g, 32, 64, 0.0));
       }},
      {"AttnBlock",
       [](uint64_t s) {
         Generator g(s);
         return M(std::make_shared<AttnBlock>(g, 32));
       }},
      {"Encoder",
       [&](uint64_t s) {
         Generator g(s);
         return M(std::make_shared<Encoder>(c, g));
       }},
      {"Decoder",
       [&](uint64_t s) {
         Generator g(s);
         return M(std::make_shared<Decoder>(c, g));
       }},
      {"VQModel",
       [&](uint64_t s) { return M(std::make_shared<VQModel>(c, QuantizerConfig{}, s)); }},
      {"VQModel with projections",
       [&](uint64_t s) { return M(std::make_shared<VQModel>(c, projected, s)); }},
      {"VectorQuantizer with projections",
       [&](uint64_t s) {
         Generator g(s);
         return M(make_quantizer(projected, 8, s, g));
       }},
      {"VectorQuantizer SimVQ",
       [&](uint64_t s) {
         Generator g(s);
         return M(make_quantizer(simvq, 8, s, g));
       }},
      {"FiniteScalarQuantizer",
       [&](uint64_t s) {
         Generator g(s);
         return M(make_quantizer(fsq, 8, s, g));
       }},
      {"NLayerDiscriminator",
       [](uint64_t s) {
         Generator g(s);
         return M(std::make_shared<NLayerDiscriminator>(1, 16, 3, g));
       }},
      {"PerceptualLoss (random)",
       [](uint64_t s) {
         Generator g(s);
         return M(std::make_shared<PerceptualLoss>(PerceptualNet::StAlexNet, g));
       }},
      {"VQGANLoss (random perceptual)",
       [&](uint64_t s) {
         Generator g(s);
         return M(std::make_shared<VQGANLoss>(random_perceptual, 1, g));
       }},
  };
  for (const auto& [name, build] : cases) EXPECT_TRUE(built_from_seed_alone(build)) << name;
}

TEST(VQModel, FmnistShapesNamesAndParameterCount) {
  const ModelConfig c = model_config_by_name("fmnist");
  VQModel model(c, QuantizerConfig{}, 1);
  // The count a loader checks a file against before building anything is the built model's (the
  // EMA codebook is a buffer, not a parameter).
  EXPECT_EQ(model.num_parameters(), c.weight_count());
  EXPECT_EQ(static_cast<int64_t>(c.weight_count()), 4494529);
  const auto state = model.state_dict();
  for (const char* name :
       {"encoder.conv_in.weight", "encoder.down.1.block.0.nin_shortcut.weight",
        "encoder.down.0.downsample.conv.weight", "encoder.mid.attn_1.q.weight",
        "encoder.mid.block_2.conv2.bias", "encoder.norm_out.weight",
        "decoder.up.2.upsample.conv.weight", "decoder.up.0.block.1.conv1.weight",
        "decoder.mid.attn_1.proj_out.weight", "decoder.conv_out.weight",
        "quantize.embedding.weight", "quantize.embedding.cluster_size",
        "quantize.embedding.embed_avg", "quant_conv.weight", "post_quant_conv.bias"}) {
    EXPECT_TRUE(has_name(state, name)) << name;
  }
  EXPECT_FALSE(has_name(state, "decoder.up.0.upsample.conv.weight"));  // outermost level has none
  model.eval();
  const auto out = model.forward(test::randn32({2, 1, 32, 32}));
  EXPECT_EQ(out.reconstruction.shape(), (Shape{2, 1, 32, 32}));
  EXPECT_EQ(out.quant.z_q.shape(), (Shape{2, 256, 8, 8}));
  EXPECT_EQ(out.quant.indices.shape(), (Shape{2, 8, 8}));
  EXPECT_EQ(c.latent_size(), 8);
}

TEST(VQModel, Seed256ParameterCountAndAttentionLevels) {
  const ModelConfig c = model_config_by_name("seed256");
  VQModel model(c, QuantizerConfig{}, 1);
  EXPECT_EQ(model.num_parameters(), c.weight_count());
  EXPECT_EQ(static_cast<int64_t>(c.weight_count()), 71879555);
  const auto names = model.named_parameters();
  EXPECT_TRUE(has_name(names, "encoder.down.4.attn.1.k.weight"));  // 16x16 is the 5th level
  EXPECT_FALSE(has_name(names, "encoder.down.3.attn.0.k.weight"));
  EXPECT_TRUE(has_name(names, "decoder.up.4.attn.2.k.weight"));  // 3 blocks per decoder level
  EXPECT_EQ(c.latent_size(), 16);
}

#ifdef VQ_PYTHON
// bench/pytorch_vqgan.py, the PyTorch twin the GPU benchmarks compare against, builds our seed256
// architecture (its parameter counts equal ours for the generator and the discriminator) and its
// training step runs with finite losses (one step at batch 1 under Debian's torch 1.13, ~20 s).
TEST(PytorchTwin, Seed256HasOurParameterCountsAndSteps) {
  const ModelConfig c = model_config_by_name("seed256");
  VQModel model(c, QuantizerConfig{}, 1);
  Generator gen(1);
  NLayerDiscriminator disc(c.in_channels, 64, 3, gen);
  const std::string out = test::temp_path("twin") + "/twin.jsonl";
  const std::string cmd =
      fmt::format("{} {} --model seed256 --batch 1 --steps 1 --amp off > {} 2>&1", VQ_PYTHON,
                  VQ_PYTORCH_TWIN, out);
  const int status = std::system(cmd.c_str());
  std::ifstream in(out);
  std::string line, last;
  while (std::getline(in, line)) last = line;
  ASSERT_EQ(status, 0) << cmd << ": " << last;
  const auto twin = nlohmann::json::parse(last);
  EXPECT_EQ(twin.at("generator_parameters").get<int64_t>(), model.num_parameters());
  EXPECT_EQ(twin.at("discriminator_parameters").get<int64_t>(), disc.num_parameters());
  EXPECT_EQ(twin.at("steps"), 1);
  for (const char* loss : {"loss", "d_loss"})
    EXPECT_TRUE(std::isfinite(twin.at(loss).get<double>())) << loss;
}
#endif

TEST(VQModel, AChangedBuiltInConfigIsNamedCustom) {
  ModelConfig c = model_config_by_name("fmnist");
  c.name_custom_if_changed();
  EXPECT_EQ(c.name, "fmnist");
  c.in_channels = c.out_channels = 3;
  c.name_custom_if_changed();
  EXPECT_EQ(c.name, "custom");
  ModelConfig named = c;
  named.name = "rgb64";  // a name of the user's own stays
  named.name_custom_if_changed();
  EXPECT_EQ(named.name, "rgb64");
}

TEST(VQModel, ConfigErrorsNameTheField) {
  ModelConfig c;
  c.ch = 48;
  EXPECT_VQ_ERROR(c.validate(), "ch must be a positive multiple of 32");
  c = ModelConfig{};
  c.resolution = 30;
  EXPECT_VQ_ERROR(c.validate(), "resolution 30 must be divisible by 4");
  EXPECT_VQ_ERROR(model_config_by_name("huge"), "unknown model config 'huge'");
  // Limits on what a config (perhaps from a damaged file) may ask for, checked before building.
  c = ModelConfig{};
  c.ch_mult = std::vector<int64_t>(9, 1);
  EXPECT_VQ_ERROR(c.validate(), "ch_mult must list 1 to 8 levels (kMaxModelLevels), got 9");
  c = ModelConfig{};
  c.ch_mult = {1, 0};
  EXPECT_VQ_ERROR(c.validate(), "every ch_mult entry must be >= 1, got 0");
  c = ModelConfig{};
  c.resolution = int64_t{1} << 40;
  EXPECT_VQ_ERROR(c.validate(), "resolution must be in [1, 8192] (kMaxModelResolution)");
  c = ModelConfig{};
  c.ch = 32 << 12;
  EXPECT_VQ_ERROR(c.validate(), "above the limit of 2e+09 (kMaxModelWeights)");
  VQModel model(ModelConfig{}, QuantizerConfig{}, 1);
  EXPECT_VQ_ERROR(model.forward(zeros({1, 3, 32, 32})),
                  "expected images [N, 1, 32, 32], got [1, 3, 32, 32]");
}

TEST(VQModel, WeightCountMatchesTheBuiltModelForOtherShapes) {
  ModelConfig c;
  c.ch = 32;
  c.ch_mult = {1, 3, 2};
  c.num_res_blocks = 3;
  c.attn_resolutions = {16, 32};
  c.in_channels = c.out_channels = 3;
  c.z_channels = 64;
  c.embed_dim = 8;
  EXPECT_EQ(VQModel(c, QuantizerConfig{}, 1).num_parameters(), c.weight_count());
}

// The fmnist layout at half width, for quick whole-model tests.
ModelConfig small_model(int64_t embed_dim) {
  ModelConfig c;
  c.ch = 32;
  c.z_channels = 32;
  c.embed_dim = embed_dim;
  return c;
}

// A taming VectorQuantizer2 checkpoint has codes only; ours derives consistent EMA statistics.
TEST(VQModel, LoadWeightsDerivesMissingQuantizerStatistics) {
  const ModelConfig c = small_model(4);
  QuantizerConfig q;
  q.n_embed = 3;
  VQModel source(c, q, 1);
  nn::NamedTensors state;
  for (const auto& [name, t] : source.state_dict()) {
    if (name.starts_with("quantize.") && name != "quantize.embedding.weight") continue;
    state.emplace_back(
        name, name == "quantize.embedding.weight"
                  ? from_vector(std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {3, 4})
                  : t);
  }
  VQModel target(c, q, 2);
  EXPECT_EQ(target.load_weights(state),
            "the checkpoint has no quantizer statistics (a taming VectorQuantizer2?); derived "
            "cluster_size = 1, embed_avg = the codes x their counts, initialized");
  const auto& vq = dynamic_cast<const VectorQuantizer&>(target.quantizer());
  EXPECT_EQ(vq.ema_counts(), (std::vector<double>{1, 1, 1}));
  EXPECT_TRUE(allclose(vq.table().embed_avg, vq.table().weight, 0.0));
  // With counts in the file (e.g. from a learned codebook), S_k = e_k N_k.
  state.emplace_back("quantize.embedding.cluster_size",
                     from_vector(std::vector<float>{2, 0.5f, 4}, {3}));
  VQModel again(c, q, 3);
  EXPECT_EQ(again.load_weights(state),
            "the checkpoint has no quantizer statistics (a taming VectorQuantizer2?); derived "
            "embed_avg = the codes x their counts, initialized");
  const auto& vq2 = dynamic_cast<const VectorQuantizer&>(again.quantizer());
  EXPECT_TRUE(allclose(
      vq2.table().embed_avg,
      from_vector(std::vector<float>{2, 4, 6, 8, 2.5f, 3, 3.5f, 4, 36, 40, 44, 48}, {3, 4}), 1e-6));
}

TEST(VQModel, GradientsReachEveryParameter) {
  const ModelConfig c = small_model(8);
  QuantizerConfig q;
  q.codebook = "learned";
  VQModel model(c, q, 3);
  const Tensor x = test::randn32({2, 1, 32, 32});
  const auto out = model.forward(x);
  // MSE, not L1: L1's gradient into the last bias is a sum of signs, which can cancel exactly.
  add(mse_loss(out.reconstruction, x), out.quant.loss).backward();
  for (const auto& [name, p] : model.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_GT(max(abs(p.grad())).item(), 0.0) << name;
  }
}

TEST(Blocks, AttentionMatchesItsDefinition) {
  Generator gen(1);
  AttnBlock block(gen, 32);
  block.to(DType::Float64);
  const Tensor x = test::randn64({2, 32, 3, 2}, 4);
  const auto params = block.state_dict();
  auto p = [&](const std::string& name) {
    for (const auto& [n, t] : params) {
      if (n == name) return t;
    }
    throw Error("no " + name);
  };
  // out = x + W_o (V softmax(Q^T K / sqrt(C))^T) per image, with 1x1 convs as matrices
  const Tensor h = group_norm(x, 32, p("norm.weight"), p("norm.bias"), 1e-6);
  for (int64_t n = 0; n < 2; ++n) {
    const Tensor hn = h.select(0, n).reshape({32, 6});
    auto lin = [&](const char* w) {
      return add(matmul(p(std::string(w) + ".weight").reshape({32, 32}), hn),
                 p(std::string(w) + ".bias").unsqueeze(1));
    };
    const Tensor q = lin("q"), k = lin("k"), v = lin("v");
    const Tensor a = softmax(div(matmul(q.t(), k), std::sqrt(32.0)), 1);
    const Tensor o = add(matmul(p("proj_out.weight").reshape({32, 32}), matmul(v, a.t())),
                         p("proj_out.bias").unsqueeze(1));
    EXPECT_TRUE(allclose(block.forward(x).select(0, n).reshape({32, 6}),
                         add(x.select(0, n).reshape({32, 6}), o), 1e-10));
  }
  std::vector<Tensor> inputs{x};
  for (const auto& t : block.parameters()) inputs.push_back(t);
  EXPECT_TRUE(
      test::grads_ok([&](const std::vector<Tensor>& in) { return block.forward(in[0]); }, inputs));
}

TEST(Blocks, DownAndUpsampleShapes) {
  Generator gen(0);
  Downsample down(gen, 32);
  Upsample up(gen, 32);
  EXPECT_EQ(down.forward(zeros({1, 32, 8, 8})).shape(), (Shape{1, 32, 4, 4}));
  EXPECT_EQ(up.forward(zeros({1, 32, 4, 4})).shape(), (Shape{1, 32, 8, 8}));
}

TEST(PatchGAN, ShapesNamesAndInit) {
  Generator gen(1);
  NLayerDiscriminator d(1, 64, 3, gen);
  EXPECT_EQ(d.forward(test::randn32({4, 1, 32, 32})).shape(), (Shape{4, 1, 2, 2}));
  const auto names = d.named_parameters();
  EXPECT_TRUE(has_name(names, "main.0.bias"));
  EXPECT_TRUE(has_name(names, "main.3.weight"));   // BatchNorm after the 2nd conv
  EXPECT_TRUE(has_name(names, "main.11.weight"));  // the final 1-channel conv
  EXPECT_FALSE(has_name(names, "main.2.bias"));    // convs before BatchNorm have no bias
  for (const auto& [name, t] : names) {
    if (name == "main.5.weight") {
      EXPECT_NEAR(std::sqrt(var(t.detach()).item()), 0.02, 0.001);
    }
  }
}

TEST(VQGANLoss, AdaptiveWeightIsTheGradientNormRatio) {
  ModelConfig c;
  c.ch = 32;
  c.z_channels = 32;
  c.embed_dim = 8;
  VQModel model(c, QuantizerConfig{}, 1);
  Generator gen(2);
  LossConfig lc;
  lc.perceptual_weight = 0.0;
  lc.disc_start = 5;
  VQGANLoss loss(lc, 1, gen);
  const Tensor x = clamp(test::randn32({2, 1, 32, 32}), -1, 1);
  const auto out = model.forward(x);
  const Tensor& last = model.decoder().last_layer_weight();
  // Before disc_start: no adversarial term.
  const auto early = loss.generator_loss(x, out.reconstruction, out.quant.loss, last, 4);
  EXPECT_FALSE(early.adaptive_weight.defined());
  EXPECT_NEAR(early.total.item(), early.nll.item() + out.quant.loss.item(), 1e-5);
  EXPECT_NEAR(early.nll.item(), 0.7 * early.l1.item(), 1e-6);
  // After: lambda = 0.4 * |grad nll| / (|grad adv| + 1e-4).
  const auto late = loss.generator_loss(x, out.reconstruction, out.quant.loss, last, 5);
  const Tensor g1 = grad(mul(l1_loss(out.reconstruction, x), 0.7), {last}, true)[0];
  const Tensor g2 =
      grad(neg(mean(loss.discriminator().forward(out.reconstruction))), {last}, true)[0];
  const double ratio =
      std::sqrt(sum(mul(g1, g1)).item()) / (std::sqrt(sum(mul(g2, g2)).item()) + 1e-4);
  const double lambda = late.adaptive_weight.item();
  EXPECT_NEAR(lambda, 0.4 * ratio, 1e-3 * lambda);
  EXPECT_NEAR(late.total.item(),
              late.nll.item() + lambda * late.g_adv.item() + out.quant.loss.item(), 1e-4);
  // The generator's step leaves no gradient on the discriminator.
  late.total.backward();
  for (const auto& p : loss.discriminator().parameters()) EXPECT_FALSE(p.grad().defined());
  const auto d = loss.discriminator_loss(x, out.reconstruction);
  d.total.backward();
  for (const auto& p : loss.discriminator().parameters()) EXPECT_TRUE(p.grad().defined());
}

}  // namespace
}  // namespace vq::models

namespace vq::models {
namespace {

// Sixteen 16x16 images of bars and blocks at different places, in [-1, 1].
Tensor toy_images() {
  std::vector<float> v(16 * 16 * 16, -1.0f);
  for (int i = 0; i < 16; ++i) {
    for (int y = 0; y < 16; ++y) {
      for (int x = 0; x < 16; ++x) {
        const bool bar = (i % 2 == 0) ? (x / 2 == i / 2) : (y / 2 == i / 2);
        const bool block =
            x >= i % 4 * 4 && x < i % 4 * 4 + 4 && y >= i / 4 * 4 && y < i / 4 * 4 + 4;
        if (bar || block) v[(i * 16 + y) * 16 + x] = 1.0f;
      }
    }
  }
  return from_vector(v, {16, 1, 16, 16});
}

TEST(VQModelSlow, TinyModelOverfitsSixteenImages) {
  ModelConfig c;
  c.resolution = 16;
  c.ch = 32;
  c.ch_mult = {1, 2};
  c.z_channels = 32;
  c.embed_dim = 16;
  QuantizerConfig q;
  q.n_embed = 32;
  q.init = "kmeans";
  q.temperature = 0.0;
  q.entropy_weight = 0.1;
  q.beta = 0.25;
  q.dead_code_reset = "step";
  VQModel model(c, q, 5);
  nn::Adam opt(model.named_parameters(), nn::AdamOptions{.lr = 2e-3});
  const Tensor x = toy_images();
  double first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    const auto out = model.forward(x);
    const Tensor l1 = l1_loss(out.reconstruction, x);
    opt.zero_grad();
    add(l1, out.quant.loss).backward();
    opt.step();
    if (step == 0) first = l1.item();
    last = l1.item();
  }
  model.eval();
  const double eval_l1 = l1_loss(model.forward(x).reconstruction, x).item();
  EXPECT_LT(last, 0.25 * first) << "first " << first << " last " << last;
  EXPECT_LT(eval_l1, 0.3 * first) << "evaluation L1 " << eval_l1;
}

}  // namespace
}  // namespace vq::models
