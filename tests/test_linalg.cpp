// matmul / bmm / linear: float32 (oneDNN sgemm) and float64 against a naive triple loop, with
// transposed and broadcast operands; gradchecks.
#include "autograd/autocast.h"
#include "test_util.h"

namespace vq {
namespace {

using test::allclose;
using test::grads_ok;
using test::randn64;

Tensor naive_mm(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  const auto av = a.contiguous().to_vector<double>(), bv = b.contiguous().to_vector<double>();
  std::vector<double> c(M * N, 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) c[i * N + j] += av[i * K + k] * bv[k * N + j];
  return from_vector<double>(c, {M, N});
}

TEST(Matmul, MatchesNaiveLoopWithTransposedOperands) {
  for (auto [M, K, N] :
       std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {3, 5, 4}, {17, 33, 9}, {64, 128, 96}}) {
    const Tensor a = randn64({M, K}, M), b = randn64({K, N}, N);
    const Tensor ref = naive_mm(a, b);
    EXPECT_TRUE(allclose(matmul(a, b), ref, 1e-10, 1e-10));
    const Tensor a32 = a.to(DType::Float32), b32 = b.to(DType::Float32);
    EXPECT_TRUE(allclose(matmul(a32, b32), ref, 1e-4, 1e-4)) << M << "x" << K << "x" << N;
    // The same product from transposed storage (passed to the GEMM as transpose flags).
    const Tensor at = a32.t().contiguous().t(), bt = b32.t().contiguous().t();
    EXPECT_FALSE(at.is_contiguous() && M > 1 && K > 1);
    EXPECT_TRUE(allclose(matmul(at, bt), ref, 1e-4, 1e-4));
  }
}

TEST(Matmul, BatchedAndBroadcastBatches) {
  const Tensor a = randn64({2, 3, 4, 5}, 1), b = randn64({3, 5, 2}, 2);
  const Tensor c = matmul(a, b);
  ASSERT_EQ(c.shape(), (Shape{2, 3, 4, 2}));
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      EXPECT_TRUE(allclose(c.select(0, i).select(0, j),
                           naive_mm(a.select(0, i).select(0, j), b.select(0, j)), 1e-10));
  const Tensor x = randn64({6, 4, 5}, 3);
  const Tensor w = randn64({5, 7}, 4);
  EXPECT_TRUE(allclose(matmul(x, w).select(0, 4), naive_mm(x.select(0, 4), w), 1e-10));
  EXPECT_TRUE(allclose(bmm(x, x.transpose(1, 2)).select(0, 2),
                       naive_mm(x.select(0, 2), x.select(0, 2).t()), 1e-10));
}

// A zero-size M, K or N (batched too): an empty result, or zeros where only K is 0 (an empty sum),
// and gradients of the operands' shapes (zeros where the other operand is empty).
TEST(Matmul, ZeroSizeDimensions) {
  struct Case {
    Shape a, b, out;
  };
  for (const Case& c : std::vector<Case>{{{4, 0}, {0, 3}, {4, 3}},
                                         {{0, 5}, {5, 3}, {0, 3}},
                                         {{4, 5}, {5, 0}, {4, 0}},
                                         {{2, 0, 5}, {5, 3}, {2, 0, 3}},
                                         {{0, 4, 5}, {5, 3}, {0, 4, 3}},
                                         {{3, 4, 0}, {3, 0, 2}, {3, 4, 2}},
                                         {{2, 1, 4, 0}, {3, 0, 2}, {2, 3, 4, 2}},
                                         {{0, 4, 5}, {0, 5, 2}, {0, 4, 2}},
                                         {{2, 4, 5}, {1, 5, 0}, {2, 4, 0}}}) {
    SCOPED_TRACE(shape_str(c.a) + " @ " + shape_str(c.b));
    Tensor a = randn64(c.a, 1).requires_grad_(), b = randn64(c.b, 2).requires_grad_();
    const Tensor out = matmul(a, b);
    ASSERT_EQ(out.shape(), c.out);
    EXPECT_TRUE(allclose(out, zeros(c.out, DType::Float64), 0, 0));
    sum(mul(out, 2.0)).backward();
    ASSERT_EQ(a.grad().shape(), c.a);
    ASSERT_EQ(b.grad().shape(), c.b);
    EXPECT_TRUE(allclose(a.grad(), zeros(c.a, DType::Float64), 0, 0));
    EXPECT_TRUE(allclose(b.grad(), zeros(c.b, DType::Float64), 0, 0));
  }
  // No features in: the bias alone; no rows: an empty batch.
  const Tensor bias = from_vector<float>({1, 2, 3}, {3});
  EXPECT_EQ(linear(zeros({2, 0}), zeros({3, 0}), bias).to_vector<float>(),
            (std::vector<float>{1, 2, 3, 1, 2, 3}));
  EXPECT_EQ(linear(zeros({0, 4}), zeros({3, 4}), bias).shape(), (Shape{0, 3}));
  EXPECT_EQ(bmm(zeros({3, 0, 2}), zeros({3, 2, 5})).shape(), (Shape{3, 0, 5}));
}

TEST(Matmul, LinearAddsBiasPerOutput) {
  const Tensor x = from_vector<float>({1, 2, 3, 4}, {2, 2});
  const Tensor w = from_vector<float>({1, 0, 0, 1, 1, 1}, {3, 2});
  const Tensor b = from_vector<float>({10, 20, 30}, {3});
  EXPECT_EQ(linear(x, w, b).to_vector<float>(), (std::vector<float>{11, 22, 33, 13, 24, 37}));
  EXPECT_EQ(linear(x, w).shape(), (Shape{2, 3}));
  EXPECT_VQ_ERROR(linear(zeros({2, 3}), w),
                  "linear: input [2, 3] has 3 features, weight [3, 2] expects 2");
}

TEST(Matmul, GradcheckF64) {
  const Tensor a = randn64({3, 4}, 1), b = randn64({4, 5}, 2);
  EXPECT_TRUE(grads_ok([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {a, b}));
  EXPECT_TRUE(
      grads_ok([](const std::vector<Tensor>& in) { return matmul(in[1].t(), in[0].t()); }, {a, b}));
  EXPECT_TRUE(
      grads_ok([](const std::vector<Tensor>& in) { return bmm(in[0], in[1].transpose(1, 2)); },
               {randn64({2, 3, 4}, 3), randn64({2, 5, 4}, 4)}));
  EXPECT_TRUE(grads_ok([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); },
                       {randn64({2, 3, 4}, 5), randn64({1, 4, 2}, 6)}));
  EXPECT_TRUE(grads_ok([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
                       {randn64({2, 3, 4}, 7), randn64({5, 4}, 8), randn64({5}, 9)}));
}

// Under autocast a product multiplies operands rounded to bfloat16 (8 significant bits) with
// float32 accumulation, and its gradients round the incoming gradient the same way: exactly the
// float32 product of the rounded tensors. Float64 inputs are left alone.
TEST(Matmul, AutocastRoundsOperandsAndGradientsToBfloat16) {
  Generator gen(9);
  const Tensor a = randn({2, 5, 7}, gen), b = randn({2, 7, 3}, gen), w = randn({2, 5, 3}, gen);
  auto rounded = [](const Tensor& t) { return t.to(DType::BFloat16).to(DType::Float32); };
  Tensor da = a.detach().requires_grad_(), db = b.detach().requires_grad_();
  Tensor out;
  {
    AutocastScope autocast(DType::BFloat16);
    out = bmm(da, db);
    sum(mul(out, w)).backward();
  }
  EXPECT_TRUE(allclose(out, bmm(rounded(a), rounded(b)), 0, 0));
  EXPECT_FALSE(allclose(out, bmm(a, b), 0, 1e-6));  // it did round
  // Within bf16's relative rounding (2^-8 per operand) of the float32 product, summed over K = 7.
  EXPECT_TRUE(allclose(out, bmm(a, b), 0.05, 0.02));
  EXPECT_TRUE(allclose(da.grad(), bmm(rounded(w), rounded(b).transpose(1, 2)), 0, 0));
  EXPECT_TRUE(allclose(db.grad(), bmm(rounded(a).transpose(1, 2), rounded(w)), 0, 0));
  const Tensor a64 = randn64({3, 4}, 1), b64 = randn64({4, 2}, 2);
  AutocastScope autocast(DType::BFloat16);
  EXPECT_TRUE(allclose(matmul(a64, b64), naive_mm(a64, b64), 1e-12));
  EXPECT_NE(autocast_policy().find("matmul, bmm, linear"), std::string::npos);
}

TEST(Matmul, ShapeErrors) {
  EXPECT_VQ_ERROR(matmul(zeros({2, 3}), zeros({4, 5})),
                  "matmul: shapes [2, 3] and [4, 5] do not multiply");
  EXPECT_VQ_ERROR(bmm(zeros({2, 3, 4}), zeros({3, 4, 5})),
                  "bmm: shapes [2, 3, 4] and [3, 4, 5] do not multiply");
  EXPECT_VQ_ERROR(matmul(zeros({3}), zeros({3, 1})), "need at least 2 dims");
}

}  // namespace
}  // namespace vq
