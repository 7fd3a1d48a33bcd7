// conv2d (oneDNN in float32, im2col in float64) against a direct 7-loop reference, forward and
// both backward passes, at toy sizes and at the models' real channel counts; resampling and
// padding ops with their gradients.
#include <algorithm>
#include <cmath>

#include "autograd/autocast.h"
#include "autograd/backend.h"
#include "autograd/low_precision_copy.h"
#include "test_util.h"

namespace vq {
namespace {

using test::allclose;
using test::grads_ok;
using test::randn64;

Shape conv_output_shape(const Shape& xs, const Shape& ws, const Conv2dOptions& o) {
  return {xs[0], ws[0],
          (xs[2] + 2 * o.padding[0] - o.dilation[0] * (ws[2] - 1) - 1) / o.stride[0] + 1,
          (xs[3] + 2 * o.padding[1] - o.dilation[1] * (ws[3] - 1) - 1) / o.stride[1] + 1};
}

// Calls tap(yi, xi, wi) for every product x[xi] * w[wi] that adds to output y[yi] of a
// convolution: the direct definition, shared by the forward and backward references. Indices
// are flat NCHW / OIHW.
template <class Tap>
void for_each_conv_tap(const Shape& xs, const Shape& ws, const Conv2dOptions& o, Tap tap) {
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], O = ws[0], kH = ws[2], kW = ws[3];
  const Shape ys = conv_output_shape(xs, ws, o);
  const int64_t OH = ys[2], OW = ys[3];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < O; ++oc)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow)
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < kH; ++i)
              for (int64_t j = 0; j < kW; ++j) {
                const int64_t h = oh * o.stride[0] - o.padding[0] + i * o.dilation[0];
                const int64_t ww = ow * o.stride[1] - o.padding[1] + j * o.dilation[1];
                if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
                tap(((n * O + oc) * OH + oh) * OW + ow, ((n * C + c) * H + h) * W + ww,
                    ((oc * C + c) * kH + i) * kW + j);
              }
}

Tensor naive_conv(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o) {
  const auto xv = x.to_vector<double>(), wv = w.to_vector<double>();
  const Shape out = conv_output_shape(x.shape(), w.shape(), o);
  std::vector<double> y(shape_numel(out), 0.0);
  for_each_conv_tap(x.shape(), w.shape(), o,
                    [&](int64_t yi, int64_t xi, int64_t wi) { y[yi] += xv[xi] * wv[wi]; });
  if (b.defined()) {
    const auto bv = b.to_vector<double>();
    const int64_t plane = out[2] * out[3];
    for (size_t k = 0; k < y.size(); ++k) y[k] += bv[(k / plane) % out[1]];
  }
  return from_vector<double>(y, out);
}

// The gradients of naive_conv for an upstream gradient dy, by the same taps: each product
// x * w that made an output contributes dy * w to dx and dy * x to dw.
struct NaiveConvGrads {
  Tensor dx, dw, db;
};
NaiveConvGrads naive_conv_backward(const Tensor& x, const Tensor& w, const Tensor& dy,
                                   const Conv2dOptions& o) {
  const auto xv = x.to_vector<double>(), wv = w.to_vector<double>(), gv = dy.to_vector<double>();
  std::vector<double> dx(xv.size(), 0.0), dw(wv.size(), 0.0), db(w.size(0), 0.0);
  for_each_conv_tap(x.shape(), w.shape(), o, [&](int64_t yi, int64_t xi, int64_t wi) {
    dx[xi] += gv[yi] * wv[wi];
    dw[wi] += gv[yi] * xv[xi];
  });
  const int64_t plane = dy.size(2) * dy.size(3);
  for (size_t k = 0; k < gv.size(); ++k) db[(k / plane) % w.size(0)] += gv[k];
  return {from_vector(dx, x.shape()), from_vector(dw, w.shape()), from_vector(db, {w.size(0)})};
}

struct ConvCase {
  Shape x, w;
  Conv2dOptions o;
  bool bias;
};

std::vector<ConvCase> conv_cases() {
  return {
      {{2, 3, 8, 8}, {4, 3, 3, 3}, {{1, 1}, {1, 1}, {1, 1}}, true},
      {{1, 2, 7, 9}, {3, 2, 3, 3}, {{2, 2}, {0, 0}, {1, 1}}, false},  // stride 2, no padding
      {{2, 4, 9, 9}, {2, 4, 4, 4}, {{2, 2}, {1, 1}, {1, 1}}, true},   // PatchGAN's 4x4 s2 p1
      {{1, 3, 10, 8}, {2, 3, 3, 3}, {{1, 1}, {2, 2}, {2, 2}}, true},  // dilation 2
      {{2, 5, 6, 6}, {3, 5, 1, 1}, {{1, 1}, {0, 0}, {1, 1}}, true},   // 1x1 (nin_shortcut)
      {{1, 2, 6, 6}, {2, 2, 3, 3}, {{2, 2}, {0, 0}, {1, 1}}, true},   // negative right padding
      {{1, 2, 5, 7}, {3, 2, 2, 3}, {{1, 2}, {1, 0}, {1, 1}}, true},   // asymmetric everything
  };
}

TEST(Conv2d, ForwardMatchesDirectLoops) {
  for (const auto& c : conv_cases()) {
    const Tensor x = randn64(c.x, 1), w = randn64(c.w, 2),
                 b = c.bias ? randn64({c.w[0]}, 3) : Tensor();
    const Tensor ref = naive_conv(x, w, b, c.o);
    EXPECT_TRUE(allclose(conv2d(x, w, b, c.o), ref, 1e-10)) << "float64 " << shape_str(c.x);
    const Tensor b32 = c.bias ? b.to(DType::Float32) : Tensor();
    EXPECT_TRUE(
        allclose(conv2d(x.to(DType::Float32), w.to(DType::Float32), b32, c.o), ref, 1e-4, 1e-4))
        << "float32 " << shape_str(c.x);
  }
}

TEST(Conv2d, GradcheckF64) {
  for (const auto& c : conv_cases()) {
    const Tensor x = randn64(c.x, 4), w = randn64(c.w, 5),
                 b = c.bias ? randn64({c.w[0]}, 6) : Tensor();
    EXPECT_TRUE(grads_ok(
        [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], c.o); }, {x, w, b}))
        << shape_str(c.x) << " " << shape_str(c.w);
  }
}

TEST(Conv2d, Float32BackwardMatchesFloat64) {
  // oneDNN's backward-data and backward-weights against the float64 path's gradients.
  for (const auto& c : conv_cases()) {
    Tensor x = randn64(c.x, 7).requires_grad_(), w = randn64(c.w, 8).requires_grad_();
    Tensor b = randn64({c.w[0]}, 9).requires_grad_();
    Tensor x32 = x.detach().to(DType::Float32).requires_grad_(),
           w32 = w.detach().to(DType::Float32).requires_grad_();
    Tensor b32 = b.detach().to(DType::Float32).requires_grad_();
    const Tensor y = conv2d(x, w, b, c.o);
    const Tensor g = randn64(y.shape(), 10);
    y.backward(g);
    conv2d(x32, w32, b32, c.o).backward(g.to(DType::Float32));
    EXPECT_TRUE(allclose(x32.grad(), x.grad(), 1e-4, 1e-4)) << "dx " << shape_str(c.x);
    EXPECT_TRUE(allclose(w32.grad(), w.grad(), 1e-3, 1e-4)) << "dw " << shape_str(c.x);
    EXPECT_TRUE(allclose(b32.grad(), b.grad(), 1e-3, 1e-4)) << "db " << shape_str(c.x);
  }
}

// The model's real channel counts take oneDNN's blocked-layout kernels, which the small cases
// above never reach: forward and both backward passes in float32 against the float64 loops.
// Tolerances: float32 sums of up to C*k*k = 2304 terms of size ~1 (relative error ~1e-6 each).
TEST(Conv2d, RealChannelCountsMatchDirectLoops) {
  const std::vector<ConvCase> cases = {
      {{2, 64, 8, 8}, {64, 64, 3, 3}, {{1, 1}, {1, 1}, {1, 1}}, true},     // encoder res block
      {{2, 128, 8, 8}, {128, 128, 3, 3}, {{1, 1}, {1, 1}, {1, 1}}, true},  // level 2
      {{1, 256, 4, 4}, {256, 256, 3, 3}, {{1, 1}, {1, 1}, {1, 1}}, true},  // seed256 deep levels
      {{2, 128, 9, 9}, {128, 128, 3, 3}, {{2, 2}, {0, 0}, {1, 1}}, true},  // downsample, stride 2
      {{2, 64, 8, 8}, {128, 64, 1, 1}, {{1, 1}, {0, 0}, {1, 1}}, true},    // 1x1 nin_shortcut
      {{2, 64, 8, 8}, {128, 64, 4, 4}, {{2, 2}, {1, 1}, {1, 1}}, false},   // PatchGAN 4x4 s2
  };
  for (const auto& c : cases) {
    const Tensor x = randn64(c.x, 11), w = mul(randn64(c.w, 12), 0.05);
    const Tensor b = c.bias ? randn64({c.w[0]}, 13) : Tensor();
    const Tensor ref = naive_conv(x, w, b, c.o);
    Tensor x32 = x.to(DType::Float32).requires_grad_(), w32 = w.to(DType::Float32).requires_grad_();
    Tensor b32 = c.bias ? b.to(DType::Float32).requires_grad_() : Tensor();
    const Tensor y = conv2d(x32, w32, b32, c.o);
    EXPECT_TRUE(allclose(y, ref, 1e-4, 1e-4)) << "forward " << shape_str(c.x) << shape_str(c.w);
    const Tensor dy = randn64(ref.shape(), 14);
    y.backward(dy.to(DType::Float32));
    const NaiveConvGrads g = naive_conv_backward(x, w, dy, c.o);
    EXPECT_TRUE(allclose(x32.grad(), g.dx, 1e-4, 1e-4))
        << "dx " << shape_str(c.x) << shape_str(c.w);
    EXPECT_TRUE(allclose(w32.grad(), g.dw, 1e-3, 1e-4))
        << "dw " << shape_str(c.x) << shape_str(c.w);
    if (c.bias) {
      EXPECT_TRUE(allclose(b32.grad(), g.db, 1e-3, 1e-4)) << "db " << shape_str(c.x);
    }
  }
}

// Under autocast the products take bfloat16 inputs and accumulate in float32. The reference is
// the direct loops in float64 on the inputs rounded to bfloat16 (round to nearest even): the
// result may then differ only by float32 accumulation (~1e-6 relative per term), while skipping
// the rounding would differ by bfloat16's half-ulp, 2^-9 = 0.2% per input (about 1e-2 on these
// sums): the tolerance 2e-3 separates the two. Backward: dx from bf16(dy) and bf16(w), dw from
// bf16(dy) and bf16(x), as PyTorch's autocast computes them.
TEST(Conv2d, AutocastBfloat16ProductsMatchRoundedInputs) {
  if (!backend_for(kCPU).why_no_low_precision(DType::BFloat16).empty())
    GTEST_SKIP() << backend_for(kCPU).why_no_low_precision(DType::BFloat16);
  const auto bf16 = [](const Tensor& t) { return t.to(DType::BFloat16).to(DType::Float64); };
  const std::vector<ConvCase> cases = {
      {{2, 64, 8, 8}, {64, 64, 3, 3}, {{1, 1}, {1, 1}, {1, 1}}, true},
      {{2, 128, 9, 9}, {128, 128, 3, 3}, {{2, 2}, {0, 0}, {1, 1}}, true},
      {{2, 64, 8, 8}, {128, 64, 1, 1}, {{1, 1}, {0, 0}, {1, 1}}, false},
      {{2, 3, 8, 8}, {4, 3, 3, 3}, {{1, 1}, {1, 1}, {1, 1}}, true},
  };
  for (const auto& c : cases) {
    const Tensor x = randn64(c.x, 21), w = mul(randn64(c.w, 22), 0.05);
    const Tensor b = c.bias ? randn64({c.w[0]}, 23) : Tensor();
    Tensor x32 = x.to(DType::Float32).requires_grad_(), w32 = w.to(DType::Float32).requires_grad_();
    Tensor b32 = c.bias ? b.to(DType::Float32).requires_grad_() : Tensor();
    Tensor y;
    {
      AutocastScope autocast(DType::BFloat16);
      y = conv2d(x32, w32, b32, c.o);
    }
    EXPECT_EQ(y.dtype(), DType::Float32);
    const Tensor rounded = naive_conv(bf16(x), bf16(w), b, c.o);
    EXPECT_TRUE(allclose(y, rounded, 1e-4, 1e-4)) << "forward " << shape_str(c.x);
    // Not the float32 result: the products really were rounded.
    const Tensor exact = naive_conv(x, w, b, c.o);
    EXPECT_FALSE(allclose(y, exact, 1e-4, 1e-4)) << "forward not in bf16 " << shape_str(c.x);
    const Tensor dy = randn64(y.shape(), 24);
    y.backward(dy.to(DType::Float32));  // outside the scope: backward follows the forward
    const NaiveConvGrads g = naive_conv_backward(bf16(x), bf16(w), bf16(dy), c.o);
    EXPECT_TRUE(allclose(x32.grad(), g.dx, 1e-4, 1e-4)) << "dx " << shape_str(c.x);
    EXPECT_TRUE(allclose(w32.grad(), g.dw, 1e-3, 1e-4)) << "dw " << shape_str(c.x);
    if (c.bias) {
      // The bias gradient sums the float32 dy itself (no product, nothing to round), as on CUDA;
      // the sum of the rounded dy would be off by up to ~2^-9 of the sum of |dy|.
      const Tensor db = naive_conv_backward(x, w, dy.to(DType::Float32).to(DType::Float64), c.o).db;
      EXPECT_TRUE(allclose(b32.grad(), db, 1e-4, 1e-5)) << "db " << shape_str(c.x);
      EXPECT_FALSE(allclose(b32.grad(), naive_conv_backward(x, w, bf16(dy), c.o).db, 1e-4, 1e-5))
          << "db from the rounded dy " << shape_str(c.x);
    }
  }
}

TEST(Autocast, PolicyAndScopes) {
  EXPECT_EQ(autocast_compute_dtype(AutocastOp::Conv2d, DType::Float32), DType::Float32);
  {
    AutocastScope outer(DType::BFloat16);
    EXPECT_EQ(autocast_compute_dtype(AutocastOp::Conv2d, DType::Float32), DType::BFloat16);
    // float64 (gradchecks) is never lowered.
    EXPECT_EQ(autocast_compute_dtype(AutocastOp::Conv2d, DType::Float64), DType::Float64);
    {
      AutocastScope off(DType::Float32);
      EXPECT_EQ(autocast_compute_dtype(AutocastOp::Conv2d, DType::Float32), DType::Float32);
    }
    EXPECT_EQ(autocast_compute_dtype(AutocastOp::Conv2d, DType::Float32), DType::BFloat16);
  }
  EXPECT_EQ(autocast_compute_dtype(AutocastOp::Conv2d, DType::Float32), DType::Float32);
  EXPECT_VQ_ERROR(AutocastScope(DType::Float64), "the low precision must be bfloat16 or float16");
  {
    // float16 is for CUDA; oneDNN has no float16 convolutions on this CPU path.
    AutocastScope half(DType::Float16);
    EXPECT_VQ_ERROR(conv2d(ones({1, 2, 5, 5}), ones({3, 2, 3, 3})),
                    "conv2d on cpu: no float16 kernels");
  }
  EXPECT_NE(autocast_policy().find("conv2d"), std::string::npos);
}

// Under autocast the CPU path remembers its bfloat16 copies of inputs between calls
// (conv_cpu.cpp, ConvertedInputs): a tensor written in place must be converted again, and a new
// tensor in the memory of a freed one (the allocator hands the same block back) must never see
// the old conversion. (Scaling by 2 or -1 is exact in bfloat16.)
TEST(Conv2d, RememberedConversionsFollowInPlaceWritesAndFreedMemory) {
  if (!backend_for(kCPU).why_no_low_precision(DType::BFloat16).empty())
    GTEST_SKIP() << backend_for(kCPU).why_no_low_precision(DType::BFloat16);
  AutocastScope autocast(DType::BFloat16);
  const auto bf16 = [](const Tensor& t) { return t.to(DType::BFloat16).to(DType::Float64); };
  const Conv2dOptions o{{1, 1}, {1, 1}, {1, 1}};
  const Tensor w = test::randn32({32, 16, 3, 3}, 2);
  Tensor x = test::randn32({8, 16, 64, 64}, 1);  // 2 MiB: in the allocator's cached sizes
  const Tensor y1 = conv2d(x, w, Tensor(), o);
  x.mul_(2.0);
  EXPECT_TRUE(allclose(conv2d(x, w, Tensor(), o), mul(y1, 2.0), 1e-5, 1e-5));
  const void* first = x.raw_data();
  x = Tensor();  // freed: its block goes back to the allocator's cache
  const Tensor fresh = test::randn32({8, 16, 64, 64}, 3);
  EXPECT_EQ(fresh.raw_data(), first) << "the allocator did not reuse the block; the test needs it";
  EXPECT_TRUE(allclose(conv2d(fresh, w, Tensor(), o), naive_conv(bf16(fresh), bf16(w), Tensor(), o),
                       1e-4, 1e-4));
  // The weights of the first calls were remembered; written in place, they convert again.
  Tensor w2 = w.clone();
  const Tensor before = conv2d(fresh, w2, Tensor(), o);
  w2.mul_(-1.0);
  EXPECT_TRUE(allclose(conv2d(fresh, w2, Tensor(), o), mul(before, -1.0), 1e-5, 1e-5));
}

TEST(Conv2d, NonContiguousInputIsHandled) {
  const Tensor x = randn64({2, 3, 6, 5}, 1).transpose(2, 3);
  const Tensor w = randn64({2, 3, 3, 3}, 2);
  EXPECT_TRUE(allclose(conv2d(x, w), naive_conv(x.contiguous(), w, Tensor(), {}), 1e-10));
}

TEST(Conv2d, ErrorsNameShapes) {
  EXPECT_VQ_ERROR(conv2d(zeros({1, 3, 8, 8}), zeros({4, 2, 3, 3})),
                  "conv2d: input [1, 3, 8, 8] has 3 channels but weight [4, 2, 3, 3] expects 2");
  EXPECT_VQ_ERROR(conv2d(zeros({3, 8, 8}), zeros({4, 3, 3, 3})),
                  "conv2d: expected a 4-d tensor input [N, C, H, W]");
  EXPECT_VQ_ERROR(conv2d(zeros({1, 3, 2, 2}), zeros({4, 3, 3, 3})),
                  "is smaller than the (dilated) kernel");
  EXPECT_VQ_ERROR(conv2d(zeros({1, 3, 8, 8}), zeros({4, 3, 3, 3}), zeros({3})),
                  "bias [3] does not match 4 output channels");
}

TEST(Resample, UpsampleNearestValuesAndGradcheck) {
  const Tensor x = from_vector<float>({1, 2, 3, 4}, {1, 1, 2, 2});
  EXPECT_EQ(upsample_nearest2d(x, 2).to_vector<float>(),
            (std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}));
  EXPECT_TRUE(grads_ok([](const std::vector<Tensor>& in) { return upsample_nearest2d(in[0], 3); },
                       {randn64({2, 2, 3, 2})}));
}

TEST(Resample, AvgPoolValuesAndGradcheck) {
  const Tensor x = arange(0, 16, DType::Float32).view({1, 1, 4, 4});
  EXPECT_EQ(avg_pool2d(x, 2, 2).to_vector<float>(), (std::vector<float>{2.5, 4.5, 10.5, 12.5}));
  // count_include_pad: the corner window covers 4 real and 5 padded cells.
  EXPECT_NEAR(avg_pool2d(x, 3, 1, 1).to_vector<float>()[0], (0 + 1 + 4 + 5) / 9.0, 1e-6);
  EXPECT_TRUE(grads_ok([](const std::vector<Tensor>& in) { return avg_pool2d(in[0], 3, 2, 1); },
                       {randn64({2, 2, 5, 6})}));
  // Without count_include_pad (PyTorch's False, the FID Inception network's pools) the corner
  // divides by its 4 real cells, an edge window by 6, the centre by 9.
  const auto means = avg_pool2d(x, 3, 1, 1, false).to_vector<float>();
  EXPECT_NEAR(means[0], (0 + 1 + 4 + 5) / 4.0, 1e-6);
  EXPECT_NEAR(means[1], (0 + 1 + 2 + 4 + 5 + 6) / 6.0, 1e-6);
  EXPECT_NEAR(means[5], (0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10) / 9.0, 1e-6);
  // Its gradient: each window's output spreads over its real cells only.
  Tensor xg = x.clone().requires_grad_();
  sum(avg_pool2d(xg, 3, 2, 1, false)).backward();  // windows at rows/cols -1 and 1: 2x2 of them
  // cell (0, 0) is in the corner window (4 cells) only: 1/4
  EXPECT_NEAR(xg.grad().to_vector<float>()[0], 0.25, 1e-6);
  // cell (1, 1) is in all four windows: 1/4 + 1/6 + 1/6 + 1/9
  EXPECT_NEAR(xg.grad().to_vector<float>()[5], 0.25 + 1 / 6.0 + 1 / 6.0 + 1 / 9.0, 1e-6);
  EXPECT_TRUE(
      grads_ok([](const std::vector<Tensor>& in) { return avg_pool2d(in[0], 3, 2, 1, false); },
               {randn64({2, 2, 5, 6})}));
}

TEST(Resample, MaxPoolValuesAndGradcheck) {
  const Tensor x =
      from_vector<float>({1, 5, 2, 0, 3, 4, 9, 8, 7, 6, 1, 2, 0, 0, 3, 4}, {1, 1, 4, 4});
  EXPECT_EQ(max_pool2d(x, 2, 2).to_vector<float>(), (std::vector<float>{5, 9, 7, 4}));
  EXPECT_TRUE(grads_ok([](const std::vector<Tensor>& in) { return max_pool2d(in[0], 2, 2); },
                       {randn64({2, 3, 4, 6})}));
  // Stride 1 (the anti-aliased networks' max-pool): windows overlap, and an input that is the
  // maximum of several windows gets the gradient of each (the 9 wins four windows, the 7 two).
  Tensor xs = x.clone().requires_grad_();
  const Tensor ys = max_pool2d(xs, 2, 1);
  EXPECT_EQ(ys.to_vector<float>(), (std::vector<float>{5, 9, 9, 7, 9, 9, 7, 6, 4}));
  sum(ys).backward();
  EXPECT_EQ(xs.grad().to_vector<float>(),
            (std::vector<float>{0, 1, 0, 0, 0, 0, 4, 0, 2, 1, 0, 0, 0, 0, 0, 1}));
  EXPECT_TRUE(grads_ok([](const std::vector<Tensor>& in) { return max_pool2d(in[0], 2, 1); },
                       {randn64({2, 3, 5, 6})}));
  // Padding 1 (3x3 stride 2): the borders are -inf, so an all-negative image keeps its own values.
  const Tensor neg = sub(x, 100.0);
  EXPECT_EQ(max_pool2d(neg, 3, 2, 1).to_vector<float>(),
            (std::vector<float>{-95, -91, -93, -91}));  // windows of rows 0-1 / 1-3, cols 0-1 / 1-3
  EXPECT_VQ_ERROR(max_pool2d(x, 3, 1, 2), "0 <= padding <= kernel/2");
}

TEST(Resample, BilinearResizeValuesAndGradcheck) {
  // Hand-checked: 2x2 to 3x3 puts the middle row and column halfway (source position 0.5) and
  // clamps the first (-1/6) and the last (7/6) to the edges.
  const Tensor x = from_vector<float>({1, 2, 3, 4}, {1, 1, 2, 2});
  EXPECT_EQ(resize_bilinear(x, 3, 3).to_vector<float>(),
            (std::vector<float>{1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4}));
  // 2 to 5 columns: source positions -0.3 (clamped), 0.1, 0.5, 0.9, 1.3 (the last column twice).
  const auto row = resize_bilinear(from_vector<float>({0, 10}, {1, 1, 1, 2}), 1, 5);
  const std::vector<float> expected_row = {0, 1, 5, 9, 10};
  for (size_t i = 0; i < expected_row.size(); ++i)
    EXPECT_NEAR(row.to_vector<float>()[i], expected_row[i], 1e-5) << i;
  // 4 to 2 (no antialiasing): the means of columns 0-1 and 2-3.
  EXPECT_EQ(
      resize_bilinear(arange(0, 4, DType::Float32).view({1, 1, 1, 4}), 1, 2).to_vector<float>(),
      (std::vector<float>{0.5, 2.5}));
  // PyTorch 1.13's F.interpolate(x, size, mode="bilinear", align_corners=False) of
  // arange(12).view(1, 1, 3, 4) ** 1.5, up to 5x7 (first row) and down to 2x3: within 2 float32
  // ulps (PyTorch blends with fused multiply-adds).
  const Tensor grid = pow(arange(0, 12, DType::Float32).view({1, 1, 3, 4}), 1.5);
  auto within_two_ulps = [](const std::vector<float>& ours, const std::vector<float>& theirs) {
    for (size_t i = 0; i < theirs.size(); ++i)
      EXPECT_NEAR(ours[i], theirs[i], 2.4e-7f * std::max(1.0f, std::abs(theirs[i]))) << i;
  };
  within_two_ulps(resize_bilinear(grid, 5, 7).to_vector<float>(),
                  {0.0f, 0.3571428954601288f, 0.9285714626312256f, 1.91421377658844f,
                   2.9975507259368896f, 4.350536346435547f, 5.196152210235596f});
  within_two_ulps(resize_bilinear(grid, 2, 3).to_vector<float>(),
                  {2.257514238357544f, 4.6703200340271f, 8.071908950805664f, 19.64965057373047f,
                   25.21820068359375f, 31.225400924682617f});
  // The gradient of the sum: each input pixel collects its weights, 1.5 per dim here.
  Tensor xg = x.clone().requires_grad_();
  sum(resize_bilinear(xg, 3, 3)).backward();
  EXPECT_EQ(xg.grad().to_vector<float>(), (std::vector<float>{2.25, 2.25, 2.25, 2.25}));
  EXPECT_TRUE(grads_ok([](const std::vector<Tensor>& in) { return resize_bilinear(in[0], 5, 3); },
                       {randn64({2, 2, 3, 4})}));
  EXPECT_EQ(resize_bilinear(x, 2, 2).to_vector<float>(), x.to_vector<float>());
  EXPECT_VQ_ERROR(resize_bilinear(x, 0, 3), "the size must be positive, got 0x3");
  EXPECT_VQ_ERROR(resize_bilinear(zeros({2, 2}), 3, 3), "resize_bilinear");
}

TEST(Resample, PadValuesAndGradcheck) {
  const Tensor x = from_vector<float>({1, 2, 3, 4}, {1, 1, 2, 2});
  // taming's downsample pads right and bottom by one.
  EXPECT_EQ(pad(x, {0, 1, 0, 1}).to_vector<float>(),
            (std::vector<float>{1, 2, 0, 3, 4, 0, 0, 0, 0}));
  EXPECT_EQ(pad(x, {1, 0}, -1).to_vector<float>(), (std::vector<float>{-1, 1, 2, -1, 3, 4}));
  EXPECT_TRUE(grads_ok(
      [](const std::vector<Tensor>& in) {
        return pad(in[0], {1, 2, 0, 1}, 0.5);
      },
      {randn64({2, 2, 3, 3})}));
  EXPECT_VQ_ERROR(pad(x, {-1, 0}), "negative padding");
}

TEST(Resample, ReflectionPadValuesAndGradcheck) {
  // Hand-checked: [1 2 3 4] padded (2, 1) mirrors without repeating the edges.
  const Tensor row = from_vector<float>({1, 2, 3, 4}, {1, 4});
  EXPECT_EQ(reflection_pad(row, {2, 1}).to_vector<float>(),
            (std::vector<float>{3, 2, 1, 2, 3, 4, 3}));
  // Against direct loops in 2-D (H and W padded differently).
  const Tensor x = randn64({2, 3, 4, 5});
  const Tensor y = reflection_pad(x, {2, 1, 1, 3});
  ASSERT_EQ(y.shape(), (Shape{2, 3, 8, 8}));
  const auto mirror = [](int64_t k, int64_t n) { return k < 0 ? -k : k < n ? k : 2 * (n - 1) - k; };
  const auto xv = x.to_vector<double>(), yv = y.to_vector<double>();
  for (int64_t p = 0; p < 6; ++p) {
    for (int64_t h = 0; h < 8; ++h) {
      for (int64_t w = 0; w < 8; ++w) {
        const int64_t sh = mirror(h - 1, 4), sw = mirror(w - 2, 5);
        EXPECT_EQ(yv[(p * 8 + h) * 8 + w], xv[(p * 4 + sh) * 5 + sw]) << p << " " << h << " " << w;
      }
    }
  }
  // The gradient adds up every copy of an input value.
  EXPECT_TRUE(grads_ok(
      [](const std::vector<Tensor>& in) {
        return reflection_pad(in[0], {2, 1, 1, 3});
      },
      {randn64({2, 2, 4, 5})}));
  EXPECT_VQ_ERROR(reflection_pad(row, {4, 0}),
                  "reflection_pad: padding [4, 0] must be non-negative and below the size of the "
                  "dim it pads (dim 1 has 4)");
}

// The low-precision operand copies autocast hands cuDNN: channels-last memory behind the NCHW
// shape, and a weight's copy made once per version of its storage.
TEST(LowPrecisionCopy, ChannelsLastHoldsTheSameValuesInNhwcMemory) {
  const Tensor x = test::randn32({2, 5, 3, 4}, 1);
  const Tensor cl = low_precision_copy(x, DType::BFloat16, true);
  EXPECT_EQ(cl.shape(), x.shape());
  EXPECT_EQ(cl.strides(), (Shape{60, 1, 20, 5}));
  EXPECT_TRUE(allclose(cl.to(DType::Float32), x.to(DType::BFloat16).to(DType::Float32), 0, 0));
  // the memory in order is NHWC
  EXPECT_TRUE(allclose(cl.permute({0, 2, 3, 1}).contiguous().to(DType::Float32),
                       x.permute({0, 2, 3, 1}).to(DType::BFloat16).to(DType::Float32), 0, 0));
  EXPECT_TRUE(low_precision_copy(x, DType::BFloat16, false).is_contiguous());
  EXPECT_VQ_ERROR(low_precision_copy(test::randn32({3, 4}, 2), DType::BFloat16, true),
                  "channels-last needs 4 dims");
}

TEST(LowPrecisionCopy, AWeightIsCastOncePerVersion) {
  const Tensor w = test::randn32({4, 3, 3, 3}, 3).requires_grad_();
  const int64_t before = low_precision_copies_made();
  const Tensor a = cached_low_precision_copy(w, DType::BFloat16, true);
  const Tensor b = cached_low_precision_copy(w, DType::BFloat16, true);
  EXPECT_EQ(a.storage(), b.storage()) << "the second call cast again";
  EXPECT_EQ(low_precision_copies_made() - before, 1);
  EXPECT_TRUE(
      allclose(a.to(DType::Float32), w.detach().to(DType::BFloat16).to(DType::Float32), 0, 0));
  // another layout is another copy
  const Tensor contiguous = cached_low_precision_copy(w, DType::BFloat16, false);
  EXPECT_TRUE(contiguous.is_contiguous());
  EXPECT_EQ(low_precision_copies_made() - before, 2);
  // an in-place change (what the optimizer does) makes the next call cast the new values
  {
    NoGradGuard no_grad;
    w.copy_(mul(w, 2.0));
  }
  const Tensor c = cached_low_precision_copy(w, DType::BFloat16, true);
  EXPECT_NE(c.storage(), a.storage());
  EXPECT_TRUE(
      allclose(c.to(DType::Float32), w.detach().to(DType::BFloat16).to(DType::Float32), 0, 0));
  EXPECT_TRUE(allclose(a.to(DType::Float32), mul(c.to(DType::Float32), 0.5), 0, 0))
      << "the copy handed out before the change must keep its values (a graph may hold it)";
  // a computed weight is cast on every call
  const int64_t mid = low_precision_copies_made();
  const Tensor scaled = mul(w, 3.0);
  cached_low_precision_copy(scaled, DType::BFloat16, true);
  cached_low_precision_copy(scaled, DType::BFloat16, true);
  EXPECT_EQ(low_precision_copies_made() - mid, 2);
}

}  // namespace
}  // namespace vq
