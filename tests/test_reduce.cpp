// Reductions: values against explicit loops over every dim combination, keepdim, max/min with
// indices and ties, and gradchecks (including non-contiguous inputs).
#include "test_util.h"

namespace vq {
namespace {

using test::allclose;
using test::grads_ok;
using test::randn64;

// Naive sum over the dims set in `mask` of a [2, 3, 4] tensor, keepdim shape.
Tensor naive_sum(const Tensor& x, std::array<bool, 3> mask) {
  const auto v = x.contiguous().to_vector<double>();
  const Shape s = x.shape();
  Shape out_shape;
  for (int d = 0; d < 3; ++d) out_shape.push_back(mask[d] ? 1 : s[d]);
  std::vector<double> out(shape_numel(out_shape), 0.0);
  for (int64_t i = 0; i < s[0]; ++i) {
    for (int64_t j = 0; j < s[1]; ++j) {
      for (int64_t k = 0; k < s[2]; ++k) {
        const int64_t oi = mask[0] ? 0 : i, oj = mask[1] ? 0 : j, ok = mask[2] ? 0 : k;
        out[(oi * out_shape[1] + oj) * out_shape[2] + ok] += v[(i * s[1] + j) * s[2] + k];
      }
    }
  }
  return from_vector<double>(out, out_shape);
}

TEST(Reduce, SumOverEveryDimSubset) {
  const Tensor x = randn64({2, 3, 4}, 1);
  for (int m = 1; m < 8; ++m) {
    std::array<bool, 3> mask{bool(m & 1), bool(m & 2), bool(m & 4)};
    std::vector<int64_t> dims;
    for (int d = 0; d < 3; ++d)
      if (mask[d]) dims.push_back(d);
    const Tensor ref = naive_sum(x, mask);
    EXPECT_TRUE(allclose(sum(x, dims, true), ref, 1e-12)) << "mask " << m;
    EXPECT_TRUE(allclose(sum(x.to(DType::Float32), dims, true), ref, 1e-5)) << "mask " << m;
    EXPECT_EQ(sum(x, dims, false).numel(), ref.numel());
  }
  EXPECT_EQ(sum(x).dim(), 0);
  EXPECT_NEAR(sum(x).item(), sum(x, {0, 1, 2}).item(), 1e-12);
  EXPECT_TRUE(allclose(sum(x, {-1}), sum(x, {2})));
}

TEST(Reduce, MeanAndVar) {
  const Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(allclose(mean(x, {1}), from_vector<double>({2, 5}, {2})));
  EXPECT_TRUE(allclose(var(x, {1}), from_vector<double>({1, 1}, {2})));
  EXPECT_TRUE(allclose(var(x, {1}, false), from_vector<double>({2.0 / 3, 2.0 / 3}, {2})));
  EXPECT_NEAR(var(x).item(), 3.5, 1e-12);
  EXPECT_VQ_ERROR(var(ones({1})), "too few for the unbiased estimate");
}

TEST(Reduce, MaxMinWithIndicesAndTies) {
  const Tensor x = from_vector<float>({3, 7, 7, 1, -2, 5, 5, -2}, {2, 4});
  const auto mx = max(x, 1);
  EXPECT_EQ(mx.values.to_vector<float>(), (std::vector<float>{7, 5}));
  EXPECT_EQ(mx.indices.to_vector<int64_t>(), (std::vector<int64_t>{1, 1}));  // first of the ties
  const auto mn = min(x, 1, true);
  EXPECT_EQ(mn.values.shape(), (Shape{2, 1}));
  EXPECT_EQ(mn.indices.to_vector<int64_t>(), (std::vector<int64_t>{3, 0}));
  EXPECT_EQ(argmax(x, 0).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0, 0}));
  EXPECT_EQ(argmin(x.t(), 0).to_vector<int64_t>(), (std::vector<int64_t>{3, 0}));
  EXPECT_EQ(max(x).item(), 7.0);
  EXPECT_EQ(min(x).item(), -2.0);
}

TEST(Reduce, MaxAlongMiddleDimMatchesLoop) {
  const Tensor x = randn64({3, 5, 4}, 6);
  const auto r = max(x, 1);
  const auto v = x.to_vector<double>();
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t k = 0; k < 4; ++k) {
      double best = -1e300;
      int64_t arg = 0;
      for (int64_t j = 0; j < 5; ++j) {
        if (v[(i * 5 + j) * 4 + k] > best) {
          best = v[(i * 5 + j) * 4 + k];
          arg = j;
        }
      }
      EXPECT_EQ(r.values.to_vector<double>()[i * 4 + k], best);
      EXPECT_EQ(r.indices.to_vector<int64_t>()[i * 4 + k], arg);
    }
  }
}

TEST(Reduce, GradcheckF64) {
  const Tensor x = randn64({3, 4, 5}, 2);
  auto f = [](auto op) { return [op](const std::vector<Tensor>& in) { return op(in[0]); }; };
  EXPECT_TRUE(grads_ok(f([](const Tensor& t) { return sum(t, {1}); }), {x}));
  EXPECT_TRUE(grads_ok(f([](const Tensor& t) { return sum(t, {0, 2}, true); }), {x}));
  EXPECT_TRUE(grads_ok(f([](const Tensor& t) { return mean(t.transpose(0, 2), {0}); }), {x}));
  EXPECT_TRUE(grads_ok(f([](const Tensor& t) { return var(t, {2}); }), {x}));
  EXPECT_TRUE(grads_ok(f([](const Tensor& t) { return var(t, {0, 1}, false, true); }), {x}));
  EXPECT_TRUE(grads_ok(f([](const Tensor& t) { return max(t, 1).values; }), {x}));
  EXPECT_TRUE(grads_ok(f([](const Tensor& t) {
                         return min(t.permute({2, 0, 1}), 2, true).values;
                       }),
                       {x}));
  EXPECT_TRUE(grads_ok(f([](const Tensor& t) { return max(t); }), {x}));
}

TEST(Reduce, SumToUndoesBroadcasting) {
  const Tensor g = ones({2, 3, 4});
  EXPECT_TRUE(allclose(sum_to(g, {3, 1}), full({3, 1}, 8.0)));
  EXPECT_TRUE(allclose(sum_to(g, {4}), full({4}, 6.0)));
  EXPECT_TRUE(allclose(sum_to(g, {}), full({}, 24.0)));
  EXPECT_VQ_ERROR(sum_to(g, {5}), "sum_to: shape [5] does not broadcast to [2, 3, 4]");
}

// Against a plain loop in double over every element, with a strided view, a bfloat16 tensor
// (widened exactly), an empty one and a tensor of several chunks; NaN and inf propagate; bad calls
// refused.
TEST(SquaredNorm, SumsTheSquaresOfEveryTensorInDouble) {
  const Tensor a = test::randn32({3, 5}, 1), b = randn64({7}, 2), big = test::randn32({70001}, 3);
  const Tensor view = test::randn32({6, 4}, 4).t();
  const Tensor low = from_vector<float>({0.5f, -1.25f, 3.0f}, {3}).to(DType::BFloat16);
  const std::vector<Tensor> all = {a, b, view, low, zeros({0}), big};
  double expected = 0.0;
  for (const Tensor& t : all)
    for (double v : t.to_vector<double>()) expected += v * v;
  const Tensor s = squared_norm(all);
  EXPECT_EQ(s.dtype(), DType::Float64);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_NEAR(s.item(), expected, 1e-12 * expected);
  EXPECT_EQ(squared_norm({low}).item(), 0.25 + 1.5625 + 9.0);
  set_num_threads(1);
  const double one_thread = squared_norm(all).item();
  set_num_threads(2);
  EXPECT_EQ(squared_norm(all).item(), one_thread);
  EXPECT_TRUE(std::isnan(squared_norm({a, from_vector<float>({1, NAN}, {2})}).item()));
  EXPECT_TRUE(std::isinf(squared_norm({from_vector<float>({-INFINITY}, {1}), b}).item()));
  EXPECT_VQ_ERROR(squared_norm({}), "squared_norm: no tensors given");
  EXPECT_VQ_ERROR(squared_norm({a, zeros({2}, DType::Int64)}), "squared_norm");
}

TEST(Reduce, DeterministicAcrossThreadCounts) {
  const Tensor x = test::randn32({257, 1031}, 9);
  set_num_threads(1);
  const auto a = sum(x, {0}).to_vector<float>();
  const auto a2 = sum(x, {1}).to_vector<float>();
  set_num_threads(2);
  EXPECT_EQ(sum(x, {0}).to_vector<float>(), a);
  EXPECT_EQ(sum(x, {1}).to_vector<float>(), a2);
}

}  // namespace
}  // namespace vq
