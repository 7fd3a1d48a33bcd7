// The backward engine: accumulation, shared inputs, retain_graph, freed graphs, no-grad mode,
// detach, and the in-place safety checks.
#include "test_util.h"

namespace vq {
namespace {

using test::allclose;

TEST(Autograd, ChainRuleOnAScalar) {
  // f(x) = sum(x^2 * 3 + x) -> df/dx = 6x + 1
  Tensor x = from_vector<double>({1, -2, 0.5}, {3}).requires_grad_();
  sum(add(mul(mul(x, x), 3.0), x)).backward();
  EXPECT_TRUE(allclose(x.grad(), from_vector<double>({7, -11, 4}, {3})));
}

TEST(Autograd, InputUsedTwiceAccumulates) {
  Tensor x = from_vector<double>({2, 3}, {2}).requires_grad_();
  const Tensor y = mul(x, x);  // both edges point at the same leaf
  sum(add(y, x)).backward();
  EXPECT_TRUE(allclose(x.grad(), from_vector<double>({5, 7}, {2})));
}

TEST(Autograd, GradientsAddUpAcrossBackwardCalls) {
  Tensor x = from_vector<double>({1, 2}, {2}).requires_grad_();
  sum(mul(x, 2.0)).backward();
  sum(mul(x, 3.0)).backward();
  EXPECT_TRUE(allclose(x.grad(), from_vector<double>({5, 5}, {2})));
}

TEST(Autograd, DiamondGraphSumsBothPaths) {
  Tensor x = from_vector<double>({1.5}, {1}).requires_grad_();
  const Tensor a = exp(x);
  const Tensor b = mul(a, a);  // e^2x
  const Tensor c = add(a, b);  // e^x + e^2x
  c.backward(ones({1}, DType::Float64));
  EXPECT_NEAR(x.grad().item(), std::exp(1.5) + 2 * std::exp(3.0), 1e-9);
}

TEST(Autograd, SecondBackwardNeedsRetainGraph) {
  Tensor x = from_vector<double>({1, 2}, {2}).requires_grad_();
  const Tensor y = sum(mul(x, x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  EXPECT_TRUE(allclose(x.grad(), from_vector<double>({4, 8}, {2})));
  EXPECT_VQ_ERROR(y.backward(), "backward through 'sum' a second time");
}

TEST(Autograd, NonScalarNeedsAGradient) {
  Tensor x = zeros({3}, DType::Float64).requires_grad_();
  EXPECT_VQ_ERROR(mul(x, 2.0).backward(), "a gradient argument is required");
  EXPECT_VQ_ERROR(mul(x, 2.0).backward(ones({2}, DType::Float64)), "gradient shape [2] differs");
}

TEST(Autograd, NoGradRecordsNothing) {
  Tensor x = ones({2}).requires_grad_();
  Tensor y;
  {
    NoGradGuard no_grad;
    y = mul(x, 2.0);
  }
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
  EXPECT_VQ_ERROR(sum(y).backward(), "does not require grad");
  EXPECT_TRUE(grad_enabled());
}

TEST(Autograd, DetachCutsTheGraph) {
  Tensor x = from_vector<double>({3}, {1}).requires_grad_();
  const Tensor y = add(mul(x.detach(), x), 0.0);  // d/dx (c * x) with c = 3 held constant
  y.backward(ones({1}, DType::Float64));
  EXPECT_DOUBLE_EQ(x.grad().item(), 3.0);
}

TEST(Autograd, IntermediateResultsAreNotLeaves) {
  Tensor x = ones({2}).requires_grad_();
  Tensor y = mul(x, 2.0);
  EXPECT_TRUE(x.is_leaf());
  EXPECT_FALSE(y.is_leaf());
  EXPECT_EQ(y.grad_fn()->name, "mul");
  EXPECT_VQ_ERROR(y.requires_grad_(false), "only leaf tensors can change requires_grad");
  EXPECT_VQ_ERROR(arange(0, 3).requires_grad_(), "int64 tensor cannot require grad");
}

TEST(Autograd, InPlaceOnTensorThatRequiresGradIsRefused) {
  Tensor w = ones({2}).requires_grad_();
  EXPECT_VQ_ERROR(w.add_(1.0), "in-place update of a tensor that requires grad");
  EXPECT_VQ_ERROR(w.copy_(zeros({2})), "in-place update of a tensor that requires grad");
  NoGradGuard no_grad;  // how optimizers update parameters
  w.add_(1.0);
  EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{2, 2}));
}

TEST(Autograd, ModifyingASavedTensorIsCaughtAtBackward) {
  Tensor x = from_vector<double>({1, 2}, {2}).requires_grad_();
  Tensor buffer = from_vector<double>({5, 6}, {2});
  const Tensor y = sum(mul(x, buffer));  // mul saves buffer for d/dx
  buffer.mul_(2.0);
  EXPECT_VQ_ERROR(y.backward(), "was modified in place after the forward pass");
}

TEST(Autograd, GradientsFlowThroughViews) {
  Tensor x = test::randn64({2, 3}).requires_grad_();
  // Uses transpose, narrow, expand and reshape; each view must route its gradient back.
  const Tensor y = x.t().narrow(0, 1, 2).unsqueeze(0).expand({4, 2, 2}).reshape({16});
  sum(mul(y, arange(0, 16, DType::Float64))).backward();
  // Element x[r][c] appears (for c in {1, 2}) at positions k*4 + (c-1)*2 + r, k = 0..3.
  std::vector<double> expected(6, 0.0);
  for (int r = 0; r < 2; ++r) {
    for (int c = 1; c < 3; ++c) {
      for (int k = 0; k < 4; ++k) expected[r * 3 + c] += k * 4 + (c - 1) * 2 + r;
    }
  }
  EXPECT_TRUE(allclose(x.grad(), from_vector<double>(expected, {2, 3})));
}

TEST(Autograd, GradcheckDetectsAWrongGradient) {
  // A deliberately wrong backward (2x instead of 3x^2) must fail the check.
  auto wrong_cube = [](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    Tensor out = mul(mul(x.detach(), x.detach()), x.detach());
    attach_grad_fn(out, "wrong_cube", {x}, [sx = SavedTensor(x)](const Tensor& dout, Grads& g) {
      g[0] = mul(dout, mul(sx.get("wrong_cube"), 2.0));
    });
    return out;
  };
  const GradcheckResult r = gradcheck(wrong_cube, {test::randn64({5})});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.report.find("elements differ"), std::string::npos) << r.report;
}

TEST(Autograd, DeepChainDoesNotOverflowTheStack) {
  Tensor x = ones({1}, DType::Float64).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = add(y, 0.0);
  y.backward(ones({1}, DType::Float64));
  EXPECT_DOUBLE_EQ(x.grad().item(), 1.0);
}

}  // namespace
}  // namespace vq

namespace vq {
namespace {

TEST(AutogradGrad, ReturnsGradientsWithoutTouchingDotGrad) {
  Tensor a = from_vector<double>({1, 2}, {2}).requires_grad_();
  Tensor b = from_vector<double>({3, 4}, {2}).requires_grad_();
  const Tensor loss = sum(mul(mul(a, b), b));  // d/da = b^2, d/db = 2ab
  const auto g = grad(loss, {b}, /*retain_graph=*/true);
  EXPECT_TRUE(test::allclose(g[0], from_vector<double>({6, 16}, {2})));
  EXPECT_FALSE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  // The graph was retained: a normal backward still works afterwards.
  loss.backward();
  EXPECT_TRUE(test::allclose(a.grad(), from_vector<double>({9, 16}, {2})));
}

TEST(AutogradGrad, PrunesBranchesThatDoNotLeadToTheInputs) {
  // The expensive branch's backward would throw; it must not run for d/dw.
  Tensor x = from_vector<double>({1, 2}, {2}).requires_grad_();
  Tensor w = from_vector<double>({0.5}, {1}).requires_grad_();
  Tensor trap = mul(x, 2.0);
  attach_grad_fn(trap, "trap", {x}, [](const Tensor&, Grads&) { throw Error("trap ran"); });
  const Tensor loss = sum(mul(trap, w));
  const auto g = grad(loss, {w}, false);
  EXPECT_NEAR(g[0].item(), 6.0, 1e-12);
  Tensor unused = zeros({3}, DType::Float64).requires_grad_();
  EXPECT_TRUE(
      test::allclose(grad(sum(mul(x, 3.0)), {unused}, false)[0], zeros({3}, DType::Float64)));
  EXPECT_VQ_ERROR(grad(sum(mul(x, 3.0)), {mul(x, 1.0)}, false), "every input must be a leaf");
}

}  // namespace
}  // namespace vq
