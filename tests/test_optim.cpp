// Optimizers against PyTorch's numbers (torch 1.13, float64, same loss and hyper-parameters:
// five steps on f(p) = sum(p^3) + sum(p^2)/2 from p = [1, -2, 0.5]), state round trips,
// gradient clipping, the float16 loss scaler and LR schedules.
#include "nn/optim/loss_scaler.h"
#include "nn/optim/lr_schedule.h"
#include "nn/optim/optimizer.h"
#include "test_util.h"

namespace vq::nn {
namespace {

using test::allclose;

class Param : public Module {
 public:
  Param() { p = register_parameter("p", from_vector<double>({1.0, -2.0, 0.5}, {3})); }
  Tensor p;
};

template <class Opt, class Options>
std::vector<double> five_steps(const Options& options) {
  Param m;
  Opt opt(m.named_parameters(), options);
  for (int i = 0; i < 5; ++i) {
    opt.zero_grad();
    add(sum(pow(m.p, 3.0)), mul(sum(mul(m.p, m.p)), 0.5)).backward();
    opt.step();
  }
  return m.p.to_vector<double>();
}

void expect_near(const std::vector<double>& a, const std::vector<double>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-9) << "element " << i;
}

TEST(Optim, SgdMatchesPyTorch) {
  expect_near(five_steps<SGD>(SgdOptions{.lr = 0.01}),
              {0.8249372155434728, -2.635400942657873, 0.4421791409452176});
  expect_near(five_steps<SGD>(
                  SgdOptions{.lr = 0.01, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01}),
              {0.5747076996662454, -3.5925259110374483, 0.358829956141714});
  expect_near(five_steps<SGD>(SgdOptions{.lr = 0.01, .momentum = 0.9, .nesterov = true}),
              {0.47888661314543685, -4.88991696380777, 0.3195747295513047});
}

TEST(Optim, AdamAndAdamWMatchPyTorch) {
  expect_near(five_steps<Adam>(AdamOptions{.lr = 0.1, .beta2 = 0.99, .weight_decay = 0.05}),
              {0.5154635637993533, -2.501865556102572, 0.04293594162937327});
  expect_near(five_steps<Adam>(AdamOptions{
                  .lr = 0.1, .beta2 = 0.99, .weight_decay = 0.05, .decoupled_weight_decay = true}),
              {0.4969014237147359, -2.447385252581302, 0.037277653576569425});
}

TEST(Optim, StateRoundTripResumesExactly) {
  auto loss = [](const Tensor& p) { return add(sum(pow(p, 3.0)), mul(sum(mul(p, p)), 0.5)); };
  Param a;
  Adam opt_a(a.named_parameters(), AdamOptions{.lr = 0.05});
  for (int i = 0; i < 3; ++i) {
    opt_a.zero_grad();
    loss(a.p).backward();
    opt_a.step();
  }
  const NamedTensors saved = opt_a.state_dict();
  EXPECT_EQ(saved.size(), 3u);  // step.p, exp_avg.p, exp_avg_sq.p
  Param b;
  b.load_state_dict(a.state_dict());
  Adam opt_b(b.named_parameters(), AdamOptions{.lr = 0.05});
  opt_b.load_state_dict(saved);
  for (auto* pair : {&opt_a, &opt_b}) {
    pair->zero_grad();
    loss(pair->params()[0].second).backward();
    pair->step();
  }
  EXPECT_TRUE(allclose(b.p, a.p, 0, 0));
  EXPECT_VQ_ERROR(opt_b.load_state_dict({{"exp_avg.q", zeros({3})}}),
                  "'exp_avg.q' names no parameter");
  EXPECT_VQ_ERROR(opt_b.load_state_dict({{"exp_avg.p", zeros({2})}}),
                  "'exp_avg.p' has shape [2], the parameter [3]");
}

TEST(Optim, SkipsParametersWithoutGradient) {
  Param m;
  SGD opt(m.named_parameters(), SgdOptions{.lr = 1.0});
  opt.step();
  EXPECT_EQ(m.p.to_vector<double>(), (std::vector<double>{1.0, -2.0, 0.5}));
}

// Adam updates all parameters in one multi-tensor step per step count: a parameter that missed
// steps (no gradient) keeps its own count, and every result equals the one-tensor update.
TEST(Optim, AdamGroupsParametersByStepCount) {
  class Two : public Module {
   public:
    Two() {
      a = register_parameter("a", from_vector<double>({1.0, -2.0}, {2}));
      b = register_parameter("b", from_vector<double>({0.5, 3.0, -1.0}, {3}));
    }
    Tensor a, b;
  } m;
  const AdamOptions options{.lr = 0.1, .beta1 = 0.5, .beta2 = 0.9};
  Adam opt(m.named_parameters(), options);
  // By hand: the same updates one tensor at a time.
  Tensor a = m.a.detach().clone(), b = m.b.detach().clone();
  Tensor ma = zeros({2}, DType::Float64), va = zeros({2}, DType::Float64);
  Tensor mb = zeros({3}, DType::Float64), vb = zeros({3}, DType::Float64);
  int64_t steps_b = 0;
  for (int64_t step = 1; step <= 4; ++step) {
    opt.zero_grad();
    const bool b_too = step != 2;  // b gets no gradient at step 2
    (b_too ? add(sum(mul(m.a, m.a)), sum(pow(m.b, 3.0))) : sum(mul(m.a, m.a))).backward();
    const Tensor ga = mul(a, 2.0), gb = mul(mul(b, b), 3.0);
    adam_step_(a, ga, ma, va, {0.1, 0.5, 0.9, 1e-8, 0.0, step, false});
    if (b_too) adam_step_(b, gb, mb, vb, {0.1, 0.5, 0.9, 1e-8, 0.0, ++steps_b, false});
    opt.step();
  }
  EXPECT_TRUE(allclose(m.a, a, 0, 0));
  EXPECT_TRUE(allclose(m.b, b, 0, 0));
  const Tensor f = zeros({2});
  EXPECT_VQ_ERROR(adam_step_({{a, ma, ma, va}, {f, f, f, f}}, {0.1, 0.5, 0.9, 1e-8, 0.0, 1, false}),
                  "every parameter of one call must share device and dtype");
}

TEST(Optim, ClipGradNormScalesToMaxNorm) {
  Tensor a = zeros({2}, DType::Float64).requires_grad_(),
         b = zeros({1}, DType::Float64).requires_grad_();
  a.set_grad(from_vector<double>({3, 0}, {2}));
  b.set_grad(from_vector<double>({4}, {1}));
  EXPECT_DOUBLE_EQ(clip_grad_norm_({a, b}, 1.0), 5.0);
  EXPECT_TRUE(allclose(a.grad(), from_vector<double>({0.6, 0}, {2}), 1e-6));
  EXPECT_TRUE(allclose(b.grad(), from_vector<double>({0.8}, {1}), 1e-6));
  EXPECT_DOUBLE_EQ(clip_grad_norm_({a, b}, 10.0),
                   1.0 * (5.0 / (5.0 + 1e-6)));  // below max: unchanged
  b.set_grad(from_vector<double>({NAN}, {1}));
  EXPECT_TRUE(std::isnan(clip_grad_norm_({a, b}, 1.0)));
}

TEST(Optim, AllFiniteChecksValuesOrGradients) {
  Tensor a = from_vector<float>({1, -2}, {2}).requires_grad_(), b = zeros({3}).requires_grad_();
  EXPECT_TRUE(all_finite({a, b}));
  EXPECT_TRUE(all_finite({a, b}, true));  // no gradients yet: nothing to check
  a.set_grad(from_vector<float>({0, 1}, {2}));
  b.set_grad(from_vector<float>({0, INFINITY, 0}, {3}));
  EXPECT_FALSE(all_finite({a, b}, true));
  EXPECT_TRUE(all_finite({a, b}));
  EXPECT_FALSE(all_finite({from_vector<float>({NAN}, {1})}));
  // Large finite values whose squares would overflow float32 still count as finite.
  EXPECT_TRUE(all_finite({from_vector<float>({3e38f, 3e38f}, {2})}));
}

TEST(LossScaler, BacksOffOnOverflowAndGrowsAfterCleanSteps) {
  LossScaler scaler({.init_scale = 1024, .growth_interval = 3});
  EXPECT_EQ(scaler.scale(), 1024);
  scaler.update(false);
  scaler.update(false);
  EXPECT_EQ(scaler.growth_tracker(), 2);
  scaler.update(true);  // an overflow halves the scale and restarts the count
  EXPECT_EQ(scaler.scale(), 512);
  EXPECT_EQ(scaler.growth_tracker(), 0);
  for (int i = 0; i < 3; ++i) scaler.update(false);
  EXPECT_EQ(scaler.scale(), 1024);  // three clean steps in a row double it
  EXPECT_EQ(scaler.growth_tracker(), 0);
  // A scale whose growth would overflow float32 stays where it is.
  LossScaler top({.init_scale = 2e38, .growth_interval = 1});
  top.update(false);
  EXPECT_EQ(top.scale(), 2e38);
  EXPECT_VQ_ERROR(LossScaler({.backoff_factor = 1.0}), "backoff_factor in (0, 1)");
  EXPECT_VQ_ERROR(LossScaler({.growth_interval = 0}), "growth_interval must be positive");
}

TEST(LossScaler, ScaledBackwardThenUnscaleGivesTheTrueGradients) {
  Param plain, scaled;
  const auto loss = [](const Param& m) {
    return add(sum(pow(m.p, 3.0)), mul(sum(mul(m.p, m.p)), 0.5));
  };
  loss(plain).backward();
  LossScaler scaler;
  scaler.scale_loss(loss(scaled)).backward();
  EXPECT_EQ(scaled.p.grad().to_vector<double>()[0], 65536.0 * 4.0);  // 3p^2 + p at p = 1
  scaler.unscale({scaled.p});
  // The scale is a power of two: dividing it out is exact.
  EXPECT_EQ(scaled.p.grad().to_vector<double>(), plain.p.grad().to_vector<double>());
}

TEST(LossScaler, AnInjectedInfSkipsTheStepAndLowersTheScale) {
  // One step of the training step's order: scaled backward, unscale, check, step or skip.
  Param m;
  Adam opt(m.named_parameters(), AdamOptions{.lr = 0.1});
  LossScaler scaler({.init_scale = 8, .growth_interval = 2});
  const auto step = [&](bool inject_inf) {
    opt.zero_grad();
    scaler.scale_loss(sum(mul(m.p, m.p))).backward();
    if (inject_inf) m.p.grad().data<double>()[1] = INFINITY;  // what a float16 overflow leaves
    scaler.unscale({m.p});
    const bool finite = all_finite({m.p}, true);
    scaler.update(!finite);
    if (finite) opt.step();
    return finite;
  };
  const std::vector<double> before = m.p.to_vector<double>();
  EXPECT_FALSE(step(true));
  EXPECT_EQ(m.p.to_vector<double>(), before);  // no update, and no NaN moments in Adam
  EXPECT_EQ(scaler.scale(), 4);
  EXPECT_TRUE(step(false));
  EXPECT_TRUE(step(false));
  EXPECT_EQ(scaler.scale(), 8);
  EXPECT_TRUE(all_finite(m.parameters()));
  EXPECT_NE(m.p.to_vector<double>(), before);
  // The state round-trips through the checkpoint's tensors, and bad state is refused.
  LossScaler copy;
  copy.load_state_dict(scaler.state_dict());
  EXPECT_EQ(copy.scale(), 8);
  EXPECT_VQ_ERROR(copy.load_state_dict({{"scale", full({}, 8.0, DType::Float64)}}),
                  "loss scaler state: missing 'growth_tracker'");
  EXPECT_VQ_ERROR(copy.load_state_dict({{"scale", full({}, -1.0, DType::Float64)},
                                        {"growth_tracker", full({}, 0.0, DType::Float64)}}),
                  "scale -1 is not positive");
  EXPECT_VQ_ERROR(copy.load_state_dict({{"scale", full({}, 8.0, DType::Float64)},
                                        {"growth_tracker", full({}, 2.5, DType::Float64)}}),
                  "growth_tracker 2.5 is not a count below the growth interval 2000");
}

TEST(LrSchedule, WarmupAndCosine) {
  LrSchedule constant{LrSchedule::Kind::Constant, 0.1};
  EXPECT_DOUBLE_EQ(constant.lr_at(1000), 0.1);
  LrSchedule warm{LrSchedule::Kind::Warmup, 0.1, 4};
  EXPECT_DOUBLE_EQ(warm.lr_at(0), 0.025);
  EXPECT_DOUBLE_EQ(warm.lr_at(3), 0.1);
  EXPECT_DOUBLE_EQ(warm.lr_at(100), 0.1);
  LrSchedule cosine{LrSchedule::Kind::Cosine, 0.1, 10, 110, 0.01};
  EXPECT_DOUBLE_EQ(cosine.lr_at(9), 0.1);
  EXPECT_NEAR(cosine.lr_at(10), 0.1, 1e-12);
  EXPECT_NEAR(cosine.lr_at(60), 0.055, 1e-12);  // halfway: (0.1 + 0.01) / 2
  EXPECT_NEAR(cosine.lr_at(110), 0.01, 1e-12);
  EXPECT_NEAR(cosine.lr_at(500), 0.01, 1e-12);
  EXPECT_VQ_ERROR(LrSchedule::parse_kind("step"), "unknown LR schedule 'step'");
}

}  // namespace
}  // namespace vq::nn
