// group_norm, batch_norm and softmax: values against composite reference formulas, running
// statistics, and gradchecks through the fused backward kernels.
#include "test_util.h"

namespace vq {
namespace {

using test::allclose;
using test::grads_ok;
using test::randn64;

// group_norm written with the generic ops (an independent path through other kernels).
Tensor composite_group_norm(const Tensor& x, int64_t G, const Tensor& w, const Tensor& b,
                            double eps) {
  const int64_t N = x.size(0), C = x.size(1);
  const Tensor xg = x.reshape({N, G, -1});
  const Tensor m = mean(xg, {2}, true);
  const Tensor v = var(xg, {2}, false, true);
  Tensor y = div(sub(xg, m), sqrt(add(v, eps))).reshape(x.shape());
  Shape affine(x.dim(), 1);
  affine[1] = C;
  return add(mul(y, w.reshape(affine)), b.reshape(affine));
}

TEST(GroupNorm, ForwardMatchesComposite) {
  const Tensor x = add(mul(randn64({2, 6, 4, 3}, 1), 3.0), 2.0);
  const Tensor w = randn64({6}, 2), b = randn64({6}, 3);
  for (int64_t G : {1, 2, 3, 6}) {
    EXPECT_TRUE(allclose(group_norm(x, G, w, b), composite_group_norm(x, G, w, b, 1e-5), 1e-10))
        << "G=" << G;
    EXPECT_TRUE(
        allclose(group_norm(x.to(DType::Float32), G, w.to(DType::Float32), b.to(DType::Float32)),
                 composite_group_norm(x, G, w, b, 1e-5), 1e-4))
        << "G=" << G;
  }
}

TEST(GroupNorm, GradcheckF64) {
  const Tensor x = randn64({2, 6, 3, 2}, 4), w = randn64({6}, 5), b = randn64({6}, 6);
  EXPECT_TRUE(grads_ok(
      [](const std::vector<Tensor>& in) { return group_norm(in[0], 3, in[1], in[2]); }, {x, w, b}));
  EXPECT_TRUE(grads_ok(
      [](const std::vector<Tensor>& in) {
        return group_norm(in[0].transpose(2, 3), 2, in[1], in[2]);
      },
      {x, w, b}));
  EXPECT_TRUE(grads_ok(
      [](const std::vector<Tensor>& in) { return group_norm(in[0], 6, Tensor(), Tensor()); }, {x}));
}

// The fused norm -> activation is the two ops, bit for bit on the CPU (values and gradients,
// float32), and its own backward passes a float64 gradcheck, with and without affine parameters.
TEST(GroupNorm, FusedSiluEqualsTheTwoOps) {
  const Tensor x = randn64({2, 8, 5, 3}, 7).to(DType::Float32).requires_grad_();
  const Tensor w = randn64({8}, 8).to(DType::Float32).requires_grad_();
  const Tensor b = randn64({8}, 9).to(DType::Float32).requires_grad_();
  const Tensor dz = randn64({2, 8, 5, 3}, 10).to(DType::Float32);
  const Tensor fused = group_norm_silu(x, 4, w, b, 1e-6);
  const Tensor two = silu(group_norm(x, 4, w, b, 1e-6));
  EXPECT_TRUE(allclose(fused, two, 0, 0));
  const auto g1 = grad(sum(mul(fused, dz)), {x, w, b}, false);
  const auto g2 = grad(sum(mul(two, dz)), {x, w, b}, false);
  for (size_t i = 0; i < g1.size(); ++i) EXPECT_TRUE(allclose(g1[i], g2[i], 0, 0)) << i;
  const Tensor x64 = randn64({2, 6, 3, 2}, 11), w64 = randn64({6}, 12), b64 = randn64({6}, 13);
  EXPECT_TRUE(grads_ok(
      [](const std::vector<Tensor>& in) { return group_norm_silu(in[0], 3, in[1], in[2]); },
      {x64, w64, b64}));
  EXPECT_TRUE(grads_ok(
      [](const std::vector<Tensor>& in) { return group_norm_silu(in[0], 2, Tensor(), Tensor()); },
      {x64}));
  EXPECT_VQ_ERROR(group_norm_silu(zeros({1, 6, 2, 2}), 4, Tensor(), Tensor()),
                  "group_norm_silu: 6 channels cannot be split into 4 groups");
}

TEST(GroupNorm, RejectsIndivisibleChannels) {
  EXPECT_VQ_ERROR(group_norm(zeros({1, 6, 2, 2}), 4, Tensor(), Tensor()),
                  "6 channels cannot be split into 4 groups");
}

TEST(BatchNorm, TrainingUsesBatchStatsAndUpdatesRunningStats) {
  const Tensor x = randn64({4, 3, 2, 2}, 7);
  const Tensor w = randn64({3}, 8), b = randn64({3}, 9);
  Tensor rm = zeros({3}, DType::Float64), rv = ones({3}, DType::Float64);
  const Tensor y = batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5);
  const Tensor m = mean(x, {0, 2, 3}, true), v = var(x, {0, 2, 3}, false, true);
  const Tensor ref = add(mul(div(sub(x, m), sqrt(add(v, 1e-5))), w.reshape({1, 3, 1, 1})),
                         b.reshape({1, 3, 1, 1}));
  EXPECT_TRUE(allclose(y, ref, 1e-10));
  EXPECT_TRUE(allclose(rm, mul(m.reshape({3}), 0.1), 1e-12));
  // running_var uses the unbiased variance (16 values per channel).
  EXPECT_TRUE(allclose(rv, add(mul(var(x, {0, 2, 3}), 0.1), 0.9), 1e-12));
}

TEST(BatchNorm, EvaluationUsesRunningStats) {
  const Tensor x = randn64({2, 3, 2, 2}, 1);
  const Tensor rm = from_vector<double>({0.5, -1, 2}, {3}),
               rv = from_vector<double>({4, 1, 0.25}, {3});
  const Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), false, 0.1, 0.0);
  EXPECT_TRUE(
      allclose(y, div(sub(x, rm.reshape({1, 3, 1, 1})), sqrt(rv.reshape({1, 3, 1, 1}))), 1e-12));
  EXPECT_EQ(rm.to_vector<double>()[0], 0.5);  // untouched
}

TEST(BatchNorm, GradcheckF64TrainAndEval) {
  const Tensor x = randn64({3, 2, 2, 3}, 2), w = randn64({2}, 3), b = randn64({2}, 4);
  EXPECT_TRUE(grads_ok(
      [](const std::vector<Tensor>& in) {
        return batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true);
      },
      {x, w, b}));
  const Tensor rm = randn64({2}, 5), rv = add(abs(randn64({2}, 6)), 0.5);
  EXPECT_TRUE(grads_ok(
      [&](const std::vector<Tensor>& in) { return batch_norm(in[0], rm, rv, in[1], in[2], false); },
      {x, w, b}));
}

TEST(Softmax, ValuesSumToOneAlongAnyDim) {
  const Tensor x = mul(randn64({3, 4, 5}, 1), 4.0);
  for (int64_t d = 0; d < 3; ++d) {
    const Tensor ref = div(exp(x), sum(exp(x), {d}, true));
    EXPECT_TRUE(allclose(softmax(x, d), ref, 1e-12)) << "dim " << d;
    EXPECT_TRUE(allclose(log_softmax(x, d), log(ref), 1e-12)) << "dim " << d;
    EXPECT_TRUE(allclose(softmax(x.to(DType::Float32), d), ref, 1e-6)) << "dim " << d;
  }
  // Large logits do not overflow.
  const Tensor big = from_vector<float>({1000, 1001, 999}, {3});
  EXPECT_TRUE(
      allclose(softmax(big, 0), from_vector<float>({0.244728f, 0.665241f, 0.090031f}, {3}), 1e-6));
}

TEST(Softmax, GradcheckF64) {
  const Tensor x = randn64({3, 4, 5}, 3);
  for (int64_t d : {0, 1, 2}) {
    EXPECT_TRUE(grads_ok([d](const std::vector<Tensor>& in) { return softmax(in[0], d); }, {x}))
        << d;
    EXPECT_TRUE(grads_ok(
        [d](const std::vector<Tensor>& in) { return log_softmax(in[0].transpose(0, 2), d); }, {x}))
        << d;
  }
}

TEST(Loss, HandComputedValues) {
  const Tensor a = from_vector<float>({1, 2, 3, 4}, {2, 2}),
               b = from_vector<float>({0, 2, 5, 3}, {2, 2});
  EXPECT_NEAR(l1_loss(a, b).item(), (1 + 0 + 2 + 1) / 4.0, 1e-7);
  EXPECT_NEAR(mse_loss(a, b).item(), (1 + 0 + 4 + 1) / 4.0, 1e-7);
  const Tensor logits = from_vector<float>({0, 2, -3, 100}, {4}),
               target = from_vector<float>({1, 0, 0.5, 1}, {4});
  // -[y log s(x) + (1-y) log(1-s(x))] per element
  const double e =
      (std::log(2.0) + (2 + std::log1p(std::exp(-2.0))) + (1.5 + std::log1p(std::exp(-3.0))) + 0) /
      4;
  EXPECT_NEAR(binary_cross_entropy_with_logits(logits, target).item(), e, 1e-6);
  EXPECT_VQ_ERROR(l1_loss(a, zeros({4})),
                  "l1_loss: input [2, 2] and target [4] must have the same shape");
}

TEST(Loss, GradcheckF64) {
  const Tensor a = randn64({3, 4}, 1), b = randn64({3, 4}, 2), t = sigmoid(randn64({3, 4}, 3));
  EXPECT_TRUE(
      grads_ok([](const std::vector<Tensor>& in) { return l1_loss(in[0], in[1]); }, {a, b}));
  EXPECT_TRUE(
      grads_ok([](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1]); }, {a, b}));
  EXPECT_TRUE(grads_ok(
      [](const std::vector<Tensor>& in) { return binary_cross_entropy_with_logits(in[0], in[1]); },
      {a, t}));
}

}  // namespace
}  // namespace vq
