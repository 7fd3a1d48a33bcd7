// Modules and layers: PyTorch-style names, state dicts and their errors, initialisation
// statistics, hand-computed layer outputs, gradients through whole modules.
#include "nn/activation.h"
#include "nn/container.h"
#include "nn/conv2d.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/init.h"
#include "nn/linear.h"
#include "nn/losses.h"
#include "nn/norm.h"
#include "test_util.h"

namespace vq::nn {
namespace {

using test::allclose;
using test::grads_ok;

// A small nested model: names must come out as block.0.weight, head.1.running_mean, ...
class Toy : public Module {
 public:
  explicit Toy(uint64_t seed = 0) {
    Generator gen(seed);
    block = register_module("block", std::make_shared<Sequential>());
    block->push_back(std::make_shared<Conv2d>(gen, 2, 4, 3, 1, 1));
    block->push_back(std::make_shared<SiLU>());
    block->push_back(std::make_shared<Conv2d>(gen, 4, 4, 1));
    heads = register_module("heads", std::make_shared<ModuleList>());
    heads->push_back(std::make_shared<Linear>(gen, 4, 3));
    heads->push_back(std::make_shared<BatchNorm2d>(4));
  }
  std::shared_ptr<Sequential> block;
  std::shared_ptr<ModuleList> heads;
};

std::vector<std::string> names_of(const NamedTensors& named) {
  std::vector<std::string> out;
  for (const auto& [name, t] : named) out.push_back(name);
  return out;
}

TEST(Module, DottedNamesLikePyTorch) {
  Toy toy;
  EXPECT_EQ(names_of(toy.named_parameters()),
            (std::vector<std::string>{"block.0.weight", "block.0.bias", "block.2.weight",
                                      "block.2.bias", "heads.0.weight", "heads.0.bias",
                                      "heads.1.weight", "heads.1.bias"}));
  EXPECT_EQ(names_of(toy.named_buffers()),
            (std::vector<std::string>{"heads.1.running_mean", "heads.1.running_var",
                                      "heads.1.num_batches_tracked"}));
  EXPECT_EQ(toy.num_parameters(), (4 * 2 * 9 + 4) + (4 * 4 + 4) + (3 * 4 + 3) + (4 + 4));
  EXPECT_EQ(toy.state_dict().size(), 11u);
}

TEST(Module, TrainEvalPropagates) {
  Toy toy;
  toy.eval();
  EXPECT_FALSE(toy.heads->at<BatchNorm2d>(1).is_training());
  toy.train();
  EXPECT_TRUE(toy.block->is_training());
  EXPECT_VQ_ERROR(toy.heads->at<Conv2d>(1), "module 1 is not of the requested type");
}

TEST(Module, StateDictRoundTripAndErrors) {
  Toy a(1), b(2);  // different weights until b loads a's
  EXPECT_FALSE(
      allclose(b.block->forward(ones({1, 2, 5, 5})), a.block->forward(ones({1, 2, 5, 5}))));
  b.load_state_dict(a.state_dict());
  EXPECT_TRUE(allclose(b.block->forward(ones({1, 2, 5, 5})), a.block->forward(ones({1, 2, 5, 5}))));

  NamedTensors broken = a.state_dict();
  broken.erase(broken.begin());                     // missing block.0.weight
  broken.emplace_back("extra.weight", zeros({1}));  // unexpected
  broken[1].second = zeros({7});                    // wrong shape (block.2.weight)
  try {
    b.load_state_dict(broken);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("wrong shape (1): block.2.weight (checkpoint [7], model [4, 4, 1, 1])"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("missing keys (1): block.0.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected keys (1): extra.weight"), std::string::npos) << msg;
  }
  // Non-strict loading tolerates missing/unexpected names but never wrong shapes.
  broken[1].second = a.state_dict()[2].second;
  EXPECT_NO_THROW(b.load_state_dict(broken, false));
}

TEST(Init, DefaultsMatchPyTorchBounds) {
  Generator gen(0);
  Conv2d conv(gen, 64, 128, 3);  // fan_in 576: U(-1/24, 1/24)
  const double bound = 1.0 / 24.0;
  EXPECT_LE(max(conv.weight()).item(), bound);
  EXPECT_GE(min(conv.weight()).item(), -bound);
  EXPECT_NEAR(var(conv.weight().detach()).item(), bound * bound / 3.0, 2e-5);
  EXPECT_LE(max(abs(conv.bias().detach())).item(), bound);
  Linear lin(gen, 100, 10);  // U(-0.1, 0.1)
  EXPECT_NEAR(max(abs(lin.weight().detach())).item(), 0.1, 0.01);
  Embedding emb(gen, 1000, 16);
  EXPECT_NEAR(var(emb.weight().detach()).item(), 1.0, 0.05);
}

TEST(Layers, HandComputedOutputs) {
  Generator gen(0);
  Conv2d conv(gen, 1, 1, 2, 1, 0);
  {
    NoGradGuard no_grad;
    conv.weight().copy_(from_vector<float>({1, 2, 3, 4}, {1, 1, 2, 2}));
    conv.bias().fill_(0.5);
  }
  // [[1 2 3],[4 5 6],[7 8 9]] * [[1 2],[3 4]] -> [[37 47],[67 77]] + 0.5
  EXPECT_EQ(conv(arange(1, 10, DType::Float32).view({1, 1, 3, 3})).to_vector<float>(),
            (std::vector<float>{37.5, 47.5, 67.5, 77.5}));
  GroupNorm gn(2, 4);
  const Tensor y = gn(from_vector<float>({1, 3, 5, 7, 0, 0, 2, 2}, {1, 4, 2}));
  // group 0 = {1,3,5,7}: mean 4, var 5; group 1 = {0,0,2,2}: mean 1, var 1
  EXPECT_TRUE(allclose(
      y, from_vector<float>({-1.3416f, -0.4472f, 0.4472f, 1.3416f, -1, -1, 1, 1}, {1, 4, 2}),
      1e-4));
  LeakyReLU leaky(0.2);
  EXPECT_EQ(leaky(from_vector<float>({-1, 2}, {2})).to_vector<float>(),
            (std::vector<float>{-0.2f, 2}));
}

TEST(Layers, BatchNormCountsBatchesAndSwitchesToRunningStats) {
  BatchNorm2d bn(2);
  const Tensor x = test::randn32({4, 2, 3, 3}, 1);
  bn(x);
  bn(x);
  EXPECT_EQ(bn.named_buffers()[2].second.item(), 2.0);
  bn.eval();
  const Tensor y = bn(x);
  const Tensor expected = div(sub(x, bn.running_mean().view({1, 2, 1, 1})),
                              sqrt(add(bn.running_var().view({1, 2, 1, 1}), 1e-5)));
  EXPECT_TRUE(allclose(y, expected, 1e-5));
  EXPECT_EQ(bn.named_buffers()[2].second.item(), 2.0);  // eval does not count
}

TEST(Layers, DropoutKeepsExpectationAndIsIdentityInEval) {
  Generator gen(5);
  Dropout drop(0.25, &gen);
  const Tensor x = ones({100000});
  const Tensor y = drop(x);
  const auto v = y.to_vector<float>();
  const double zeros_fraction = std::count(v.begin(), v.end(), 0.0f) / 100000.0;
  EXPECT_NEAR(zeros_fraction, 0.25, 0.01);
  EXPECT_NEAR(mean(y).item(), 1.0, 0.01);
  drop.eval();
  EXPECT_TRUE(drop(x).same(x));
}

TEST(Layers, GradcheckThroughWholeModules) {
  Toy toy;
  toy.to(DType::Float64);
  std::vector<Tensor> inputs{test::randn64({2, 2, 4, 4}, 3)};
  for (const Tensor& p : toy.block->parameters()) inputs.push_back(p);
  EXPECT_TRUE(
      grads_ok([&](const std::vector<Tensor>& in) { return toy.block->forward(in[0]); }, inputs));

  GroupNorm gn(2, 4);
  gn.to(DType::Float64);
  EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return gn(in[0]); },
                       {test::randn64({2, 4, 3}, 4), gn.parameters()[0], gn.parameters()[1]}));
  auto& bn = toy.heads->at<BatchNorm2d>(1);
  EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return bn(in[0]); },
                       {test::randn64({3, 4, 2, 2}, 5), bn.weight(), bn.bias()}));
}

TEST(Layers, EveryParameterGetsAGradient) {
  Toy toy;
  const Tensor h = toy.block->forward(test::randn32({2, 2, 5, 5}));
  const Tensor pooled = mean(h, {2, 3});
  add(sum(toy.heads->at<Linear>(0)(pooled)), sum(toy.heads->at<BatchNorm2d>(1)(h))).backward();
  for (const auto& [name, p] : toy.named_parameters()) EXPECT_TRUE(p.grad().defined()) << name;
  toy.zero_grad();
  for (const auto& [name, p] : toy.named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
}

TEST(Losses, GanLossesHandComputed) {
  const Tensor real = from_vector<float>({2, 0}, {2}), fake = from_vector<float>({-2, 0.5}, {2});
  // hinge: (mean(relu(1 - [2, 0])) + mean(relu(1 + [-2, 0.5]))) / 2 = (0.5 + 0.75) / 2
  EXPECT_NEAR(hinge_d_loss(real, fake).item(), 0.625, 1e-6);
  const double vanilla = (std::log1p(std::exp(-2.0)) + std::log(2.0)) / 2 / 2 +
                         (std::log1p(std::exp(-2.0)) + std::log1p(std::exp(0.5))) / 2 / 2;
  EXPECT_NEAR(vanilla_d_loss(real, fake).item(), vanilla, 1e-6);
  EXPECT_NEAR(generator_adversarial_loss(fake).item(), 0.75, 1e-6);
}

}  // namespace
}  // namespace vq::nn
