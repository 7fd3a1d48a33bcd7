// Elementwise ops: values against std:: math on every element, broadcasting, strided inputs,
// gradchecks (plain, broadcast, non-contiguous) and error messages.
#include <functional>

#include "test_util.h"

namespace vq {
namespace {

using test::allclose;
using test::grads_ok;
using test::randn64;

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> reference;
  bool positive_only;  // domain restricted to x > 0
  bool differentiable;
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }, false, true},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double x) { return std::abs(x); }, false,
       true},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, true,
       true},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); },
       true, true},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); }, false,
       true},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, true,
       true},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); },
       [](double x) { return 1 / (1 + std::exp(-x)); }, false, true},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); },
       false, true},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0; },
       false, true},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.2); },
       [](double x) { return x > 0 ? x : 0.2 * x; }, false, true},
      {"silu", [](const Tensor& x) { return silu(x); },
       [](double x) { return x / (1 + std::exp(-x)); }, false, true},
      {"softplus", [](const Tensor& x) { return softplus(x); },
       [](double x) { return std::log1p(std::exp(x)); }, false, true},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.7); },
       [](double x) { return std::min(0.7, std::max(-0.5, x)); }, false, true},
      {"pow_scalar", [](const Tensor& x) { return pow(x, 2.5); },
       [](double x) { return std::pow(x, 2.5); }, true, true},
      {"add_scalar", [](const Tensor& x) { return add(x, 1.25); },
       [](double x) { return x + 1.25; }, false, true},
      {"mul_scalar", [](const Tensor& x) { return mul(x, -3.0); }, [](double x) { return -3 * x; },
       false, true},
      {"rsub_scalar", [](const Tensor& x) { return rsub(2.0, x); }, [](double x) { return 2 - x; },
       false, true},
      {"div_scalar", [](const Tensor& x) { return div(x, 4.0); }, [](double x) { return x / 4; },
       false, true},
      {"sign", [](const Tensor& x) { return sign(x); },
       [](double x) { return double((x > 0) - (x < 0)); }, false, false},
      {"round", [](const Tensor& x) { return round(mul(x, 3.0)); },
       [](double x) { return std::nearbyint(3 * x); }, false, false},
  };
}

// Inputs kept away from kinks (0, clamp bounds) so finite differences are meaningful.
Tensor away_from_kinks(const Tensor& x, bool positive) {
  auto v = x.to_vector<double>();
  for (double& e : v) {
    if (positive)
      e = std::abs(e) + 0.2;
    else if (std::abs(e) < 0.05 || std::abs(e + 0.5) < 0.05 || std::abs(e - 0.7) < 0.05)
      e += 0.13;
  }
  return from_vector<double>(v, x.shape());
}

TEST(Unary, ValuesMatchStdMathInBothPrecisions) {
  for (const auto& c : unary_cases()) {
    const Tensor x = away_from_kinks(randn64({3, 7, 5}, 11), c.positive_only);
    std::vector<double> expected;
    for (double v : x.to_vector<double>()) expected.push_back(c.reference(v));
    const Tensor ref = from_vector<double>(expected, x.shape());
    EXPECT_TRUE(allclose(c.op(x), ref, 1e-12, 1e-12)) << c.name << " (float64)";
    EXPECT_TRUE(allclose(c.op(x.to(DType::Float32)), ref, 1e-5, 1e-5)) << c.name << " (float32)";
    // Strided input: the transposed view gives the transposed result.
    EXPECT_TRUE(allclose(c.op(x.transpose(0, 2)), ref.transpose(0, 2), 1e-12, 1e-12))
        << c.name << " (strided)";
  }
}

TEST(Unary, GradcheckF64) {
  for (const auto& c : unary_cases()) {
    if (!c.differentiable) continue;
    const Tensor x = away_from_kinks(randn64({4, 3}, 5), c.positive_only);
    EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return c.op(in[0]); }, {x}))
        << c.name;
    // Through a non-contiguous view.
    EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return c.op(in[0].t()); }, {x}))
        << c.name << " (transposed)";
  }
}

TEST(Unary, StableAtExtremes) {
  const Tensor x = from_vector<float>({-1000, -50, 0, 50, 1000}, {5});
  EXPECT_TRUE(allclose(sigmoid(x), from_vector<float>({0, 1.9287e-22f, 0.5, 1, 1}, {5}), 1e-6));
  EXPECT_TRUE(
      allclose(softplus(x), from_vector<float>({0, 1.9287e-22f, 0.693147f, 50, 1000}, {5}), 1e-5));
  EXPECT_TRUE(allclose(silu(x), from_vector<float>({-0.0f, -9.6e-21f, 0, 50, 1000}, {5}), 1e-6));
}

// A NaN must reach the loss so that the trainer can see it: activations propagate it as PyTorch's
// do (relu(NaN) once gave 0, which hid a NaN discriminator behind a finite hinge loss).
TEST(Unary, NanPropagatesThroughActivations) {
  const Tensor x = from_vector<float>({std::nanf("")}, {1});
  for (const auto& [name, y] :
       std::vector<std::pair<const char*, Tensor>>{{"relu", relu(x)},
                                                   {"leaky_relu", leaky_relu(x, 0.2)},
                                                   {"silu", silu(x)},
                                                   {"softplus", softplus(x)},
                                                   {"abs", abs(x)},
                                                   {"clamp", clamp(x, -1.0, 1.0)}}) {
    EXPECT_TRUE(std::isnan(y.item())) << name;
  }
}

TEST(Unary, KinkGradientsFollowPyTorch) {
  // relu'(0) = 0, abs'(0) = 0, clamp passes the gradient at its bounds.
  Tensor x = from_vector<double>({0.0, -1.0, 2.0}, {3}).requires_grad_();
  sum(add(add(relu(x), abs(x)), clamp(x, -1.0, 2.0))).backward();
  EXPECT_TRUE(allclose(x.grad(), from_vector<double>({1, 0, 3}, {3})));
}

struct BinaryCase {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> op;
  std::function<double(double, double)> reference;
};

std::vector<BinaryCase> binary_cases() {
  return {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); },
       [](double a, double b) { return a + b; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); },
       [](double a, double b) { return a - b; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); },
       [](double a, double b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); },
       [](double a, double b) { return a / b; }},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(abs(a), b); },
       [](double a, double b) { return std::pow(std::abs(a), b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); },
       [](double a, double b) { return std::max(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); },
       [](double a, double b) { return std::min(a, b); }},
  };
}

// Values of a broadcast binary op computed with explicit index arithmetic.
Tensor broadcast_reference(const Tensor& a, const Tensor& b,
                           const std::function<double(double, double)>& f) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), "test");
  const auto av = a.contiguous().to_vector<double>(), bv = b.contiguous().to_vector<double>();
  std::vector<double> out(shape_numel(shape));
  for (int64_t i = 0; i < shape_numel(shape); ++i) {
    int64_t rest = i, ia = 0, ib = 0, sa = 1, sb = 1;
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
      const int64_t idx = rest % shape[d];
      rest /= shape[d];
      const int64_t da = d - (static_cast<int64_t>(shape.size()) - a.dim());
      const int64_t db = d - (static_cast<int64_t>(shape.size()) - b.dim());
      if (da >= 0) {
        if (a.size(da) > 1) ia += idx * sa;
        sa *= a.size(da);
      }
      if (db >= 0) {
        if (b.size(db) > 1) ib += idx * sb;
        sb *= b.size(db);
      }
    }
    out[i] = f(av[ia], bv[ib]);
  }
  return from_vector<double>(out, shape);
}

TEST(Binary, BroadcastValuesMatchIndexArithmetic) {
  const std::vector<std::pair<Shape, Shape>> shapes = {{{2, 3, 4}, {2, 3, 4}}, {{2, 3, 4}, {4}},
                                                       {{2, 1, 4}, {3, 1}},    {{1}, {2, 3}},
                                                       {{5, 1, 1}, {1, 3, 2}}, {{}, {3}}};
  for (const auto& c : binary_cases()) {
    for (const auto& [sa, sb] : shapes) {
      const Tensor a = add(randn64(sa, 3), 0.1), b = add(abs(randn64(sb, 4)), 0.5);
      const Tensor ref = broadcast_reference(a, b, c.reference);
      EXPECT_TRUE(allclose(c.op(a, b), ref, 1e-12, 1e-12))
          << c.name << " " << shape_str(sa) << " " << shape_str(sb);
      EXPECT_TRUE(allclose(c.op(a.to(DType::Float32), b.to(DType::Float32)), ref, 1e-5, 1e-5))
          << c.name;
    }
  }
}

TEST(Binary, GradcheckF64WithBroadcastAndViews) {
  for (const auto& c : binary_cases()) {
    const Tensor a = randn64({3, 4}, 8), b = add(abs(randn64({4}, 9)), 0.5);
    EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return c.op(in[0], in[1]); }, {a, b}))
        << c.name;
    EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return c.op(in[1], in[0]); }, {a, b}))
        << c.name << " swapped";
    const Tensor at = randn64({4, 3}, 10), col = add(abs(randn64({4, 1}, 12)), 0.5);
    EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return c.op(in[0].t(), in[1].t()); },
                         {at, col}))
        << c.name << " transposed";
  }
}

TEST(Binary, MaximumSplitsTiesEvenly) {
  Tensor a = from_vector<double>({1, 2, 3}, {3}).requires_grad_();
  Tensor b = from_vector<double>({1, 5, 0}, {3}).requires_grad_();
  sum(maximum(a, b)).backward();
  EXPECT_TRUE(allclose(a.grad(), from_vector<double>({0.5, 0, 1}, {3})));
  EXPECT_TRUE(allclose(b.grad(), from_vector<double>({0.5, 1, 0}, {3})));
}

TEST(Binary, ErrorsNameOpAndShapes) {
  EXPECT_VQ_ERROR(add(zeros({2, 3}), zeros({4})),
                  "add: shapes [2, 3] and [4] cannot be broadcast together");
  EXPECT_VQ_ERROR(mul(zeros({2}), zeros({2}, DType::Float64)),
                  "mul: dtypes differ (float32 with shape [2] and float64");
}

TEST(Binary, IntegerArithmeticWorksWithoutGrad) {
  EXPECT_EQ(add(arange(0, 3), arange(5, 8)).to_vector<int64_t>(), (std::vector<int64_t>{5, 7, 9}));
}

TEST(Compare, MasksAndWhere) {
  const Tensor a = from_vector<float>({1, 2, 3, 4}, {4});
  const Tensor b = from_vector<float>({2, 2, 2, 2}, {4});
  EXPECT_EQ(lt(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 0, 0, 0}));
  EXPECT_EQ(le(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 1, 0, 0}));
  EXPECT_EQ(eq(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1, 0, 0}));
  EXPECT_EQ(ne(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 0, 1, 1}));
  EXPECT_EQ(gt(a, 2.5).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 0, 1, 1}));
  EXPECT_EQ(ge(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1, 1, 1}));
  EXPECT_EQ(where(gt(a, 2.5), a, zeros({1})).to_vector<float>(), (std::vector<float>{0, 0, 3, 4}));
  EXPECT_VQ_ERROR(where(a, a, b), "the condition must be a uint8 mask");
}

TEST(Compare, WhereGradcheckWithBroadcast) {
  const Tensor cond = gt(randn64({3, 4}, 2), 0.0);
  EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); },
                       {randn64({3, 4}, 3), randn64({4}, 4)}));
}

}  // namespace
}  // namespace vq
