// Tensor basics: factories, views sharing storage, contiguous copies, dtype conversions,
// formatting, seeded randomness and error messages.
#include <cmath>
#include <cstdlib>
#include <limits>

#include "autograd/format.h"
#include "autograd/switches.h"
#include "test_util.h"

namespace vq {
namespace {

using test::allclose;

TEST(Tensor, FactoriesFillShapeAndValues) {
  const Tensor z = zeros({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.strides(), (Shape{3, 1}));
  EXPECT_EQ(z.dtype(), DType::Float32);
  EXPECT_EQ(z.to_vector<float>(), std::vector<float>(6, 0.0f));
  EXPECT_EQ(full({2}, 2.5, DType::Float64).to_vector<double>(), (std::vector<double>{2.5, 2.5}));
  EXPECT_EQ(arange(3, 7).to_vector<int64_t>(), (std::vector<int64_t>{3, 4, 5, 6}));
  EXPECT_EQ(scalar_tensor(4.0).item(), 4.0);
  EXPECT_EQ(scalar_tensor(4.0).dim(), 0);
  const Tensor v = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(v.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(Tensor, FromVectorRejectsWrongCount) {
  EXPECT_VQ_ERROR(from_vector<float>({1, 2, 3}, {2, 2}), "3 values do not fill shape [2, 2]");
}

TEST(Tensor, ViewsShareStorage) {
  const Tensor x = from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  const Tensor t = x.t();
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_EQ(t.strides(), (Shape{1, 3}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.storage(), x.storage());
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  NoGradGuard no_grad;
  t.narrow(0, 1, 1).fill_(9);  // writes x[:, 1]
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{0, 9, 2, 3, 9, 5}));
}

TEST(Tensor, ViewReshapePermuteSqueeze) {
  const Tensor x = arange(0, 24, DType::Float32).view({2, 3, 4});
  EXPECT_EQ(x.view({6, -1}).shape(), (Shape{6, 4}));
  EXPECT_EQ(x.permute({2, 0, 1}).shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(x.permute({2, 0, 1}).to_vector<float>()[1], 4.0f);  // permuted[0][0][1] = x[0][1][0]
  EXPECT_EQ(x.unsqueeze(1).shape(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(x.unsqueeze(-1).shape(), (Shape{2, 3, 4, 1}));
  EXPECT_EQ(x.unsqueeze(1).squeeze(1).shape(), x.shape());
  EXPECT_EQ(x.flatten(1).shape(), (Shape{2, 12}));
  EXPECT_EQ(x.select(1, 2).to_vector<float>(), (std::vector<float>{8, 9, 10, 11, 20, 21, 22, 23}));
  // A transposed tensor cannot be viewed flat, but can be reshaped (with a copy).
  EXPECT_VQ_ERROR(x.transpose(0, 2).view({24}), "without a copy; use reshape()");
  const Tensor r = x.transpose(0, 2).reshape({24});
  EXPECT_NE(r.storage(), x.storage());
  EXPECT_EQ(r.to_vector<float>()[1], 12.0f);
  // A view that keeps contiguous runs needs no copy.
  EXPECT_EQ(x.transpose(0, 1).reshape({3, 2, 2, 2}).storage(), x.storage());
}

TEST(Tensor, ExpandUsesZeroStrides) {
  const Tensor x = from_vector<float>({1, 2, 3}, {3, 1});
  const Tensor e = x.expand({2, 3, 4});
  EXPECT_EQ(e.strides(), (Shape{0, 1, 0}));
  EXPECT_EQ(e.contiguous().to_vector<float>()[5], 2.0f);
  EXPECT_VQ_ERROR(x.expand({2, 2}), "cannot expand shape [3, 1] to [2, 2]");
}

TEST(Tensor, ContiguousCopiesOnlyWhenNeeded) {
  const Tensor x = test::randn32({4, 5});
  EXPECT_TRUE(x.contiguous().same(x));
  const Tensor c = x.t().contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_TRUE(allclose(c, x.t()));
}

TEST(Tensor, DtypeConversionsRoundTrip) {
  const Tensor x = from_vector<float>({-1.5f, 0.0f, 2.25f, 65504.0f, 1e-7f}, {5});
  EXPECT_EQ(x.to(DType::Float64).to_vector<double>()[2], 2.25);
  EXPECT_EQ(x.to(DType::Int64).to_vector<int64_t>()[0], -1);  // truncates like a C cast
  // float16 keeps these exactly except the subnormal, which rounds to the nearest half.
  const auto h = x.to(DType::Float16).to(DType::Float32).to_vector<float>();
  EXPECT_EQ(h[0], -1.5f);
  EXPECT_EQ(h[3], 65504.0f);
  EXPECT_NEAR(h[4], 1e-7f, 6e-8f);
  const auto b = x.to(DType::BFloat16).to(DType::Float32).to_vector<float>();
  EXPECT_EQ(b[2], 2.25f);
  EXPECT_EQ(b[3], 65536.0f);  // 8 mantissa bits: 65504 rounds to 2^16
  EXPECT_EQ(from_vector<uint8_t>({0, 255}, {2}).to(DType::Float32).to_vector<float>()[1], 255.0f);
}

// Round to nearest, ties to even, on hand-picked values: exact ties either way, just above a tie,
// overflow to infinity, subnormals (float16 has its own; bfloat16 keeps float32's), signed zero,
// infinities and NaN.
TEST(Tensor, HalfConversionsRoundToNearestEven) {
  const auto round_trip = [](std::vector<float> v, DType dtype) {
    const auto n = static_cast<int64_t>(v.size());
    return from_vector<float>(v, {n}).to(dtype).to(DType::Float32).to_vector<float>();
  };
  const float inf = std::numeric_limits<float>::infinity();
  // bfloat16: 8 significant bits, so 1 + 2^-7 is the next value after 1.
  const auto b = round_trip({1 + 0x1p-8f, 1 + 3 * 0x1p-8f, 1 + 0x1p-8f + 0x1p-20f, 3.4028235e38f,
                             0x1p-133f + 0x1p-140f, -0.0f, -inf, std::nanf("")},
                            DType::BFloat16);
  EXPECT_EQ(b[0], 1.0f);            // tie: down to the even 1.0
  EXPECT_EQ(b[1], 1 + 0x1p-6f);     // tie: up to the even 1 + 2^-6
  EXPECT_EQ(b[2], 1 + 0x1p-7f);     // above the tie: up
  EXPECT_EQ(b[3], inf);             // float32's largest rounds past bfloat16's
  EXPECT_EQ(b[4], 0x1p-133f);       // a float32 subnormal stays subnormal
  EXPECT_TRUE(std::signbit(b[5]));  // -0 keeps its sign
  EXPECT_EQ(b[6], -inf);
  EXPECT_TRUE(std::isnan(b[7]));
  // float16: 11 significant bits, largest 65504, smallest subnormal 2^-24.
  const auto h = round_trip({1 + 0x1p-11f, 1 + 3 * 0x1p-11f, 65519.0f, 65520.0f, 0x1p-24f, 0x1p-25f,
                             3 * 0x1p-26f, -0.0f, inf, std::nanf("")},
                            DType::Float16);
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], 1 + 0x1p-9f);
  EXPECT_EQ(h[2], 65504.0f);  // below the tie: the largest half
  EXPECT_EQ(h[3], inf);       // the tie between 65504 (odd) and 2^16 goes up: infinity
  EXPECT_EQ(h[4], 0x1p-24f);  // the smallest subnormal is exact
  EXPECT_EQ(h[5], 0.0f);      // half of it is a tie: down to the even 0
  EXPECT_EQ(h[6], 0x1p-24f);  // three quarters: up
  EXPECT_TRUE(std::signbit(h[7]));
  EXPECT_EQ(h[8], inf);
  EXPECT_TRUE(std::isnan(h[9]));
}

TEST(Tensor, MathOnStorageOnlyDtypesAsksForConversion) {
  const Tensor h = zeros({2}).to(DType::Float16);
  EXPECT_VQ_ERROR(exp(h), "expected a float32 or float64 tensor, got float16");
}

TEST(Tensor, FormatShowsValuesShapeAndDtype) {
  const Tensor x = from_vector<float>({1, 2.5, 3, 4}, {2, 2});
  EXPECT_EQ(fmt::format("{}", x), "tensor([[1, 2.5], [3, 4]], shape=[2, 2], dtype=float32)");
  EXPECT_EQ(fmt::format("{}", arange(0, 20)),
            "tensor([0, 1, 2, ..., 17, 18, 19], shape=[20], dtype=int64)");
}

TEST(Generator, SameSeedSameValuesAnyThreadCount) {
  set_num_threads(1);
  Generator g1(42);
  const auto a = randn({100000}, g1).to_vector<float>();
  set_num_threads(2);
  Generator g2(42);
  const auto b = randn({100000}, g2).to_vector<float>();
  EXPECT_EQ(a, b);
  Generator g3(43);
  EXPECT_NE(randn({100000}, g3).to_vector<float>(), a);
}

TEST(Generator, StreamAdvancesAndMomentsAreRight) {
  Generator gen(7);
  const Tensor u1 = rand({200000}, gen);
  const Tensor u2 = rand({200000}, gen);
  EXPECT_NE(u1.to_vector<float>(), u2.to_vector<float>());
  EXPECT_NEAR(mean(u1).item(), 0.5, 0.005);
  EXPECT_NEAR(var(u1).item(), 1.0 / 12, 0.002);
  EXPECT_GE(min(u1).item(), 0.0);
  EXPECT_LT(max(u1).item(), 1.0);
  const Tensor n = randn({200000}, gen);
  EXPECT_NEAR(mean(n).item(), 0.0, 0.01);
  EXPECT_NEAR(var(n).item(), 1.0, 0.01);
  // Restoring the state replays the stream.
  Generator replay(7);
  replay.set_state(7, 0);
  EXPECT_EQ(rand({200000}, replay).to_vector<float>(), u1.to_vector<float>());
}

TEST(Generator, RandintAndRandpermStayInRange) {
  Generator gen(3);
  const auto r = randint(-3, 5, {10000}, gen).to_vector<int64_t>();
  std::vector<int> seen(8, 0);
  for (int64_t v : r) {
    ASSERT_GE(v, -3);
    ASSERT_LT(v, 5);
    ++seen[v + 3];
  }
  for (int c : seen) EXPECT_GT(c, 1000);
  auto p = randperm(50, gen).to_vector<int64_t>();
  std::sort(p.begin(), p.end());
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(p[i], i);
}

TEST(Device, ParseAndErrors) {
  EXPECT_TRUE(parse_device("cpu").is_cpu());
  EXPECT_EQ(parse_device("cuda:1").index, 1);
  EXPECT_VQ_ERROR(parse_device("tpu"), "unknown device 'tpu'");
  if (!backend_registered(DeviceType::CUDA)) {
    EXPECT_VQ_ERROR(zeros({2}, DType::Float32, parse_device("cuda")),
                    "this build has no CUDA backend");
  }
}

// Every value brought to the host counts once, on the CPU too; ops count as backend calls.
TEST(DispatchCounts, HostReadsAndBackendCalls) {
  const Tensor x = ones({4});
  DispatchCounts before = dispatch_counts();
  (void)sum(x).item();
  (void)x.to_vector<float>();
  (void)x.to(kCPU);  // already there: no read
  DispatchCounts after = dispatch_counts();
  EXPECT_EQ(after.host_reads - before.host_reads, 2);
  EXPECT_GE(after.backend_calls - before.backend_calls, 2);  // sum's allocation and kernel
  before = after;
  (void)add(x, x);
  EXPECT_EQ(dispatch_counts().host_reads, before.host_reads);
}

TEST(EnvSwitch, DefaultWhenUnsetOffOnlyForZero) {
  ::unsetenv("VQ_TEST_SWITCH");
  EXPECT_TRUE(env_switch("VQ_TEST_SWITCH", true));
  EXPECT_FALSE(env_switch("VQ_TEST_SWITCH", false));
  ::setenv("VQ_TEST_SWITCH", "0", 1);
  EXPECT_FALSE(env_switch("VQ_TEST_SWITCH", true));
  ::setenv("VQ_TEST_SWITCH", "1", 1);
  EXPECT_TRUE(env_switch("VQ_TEST_SWITCH", false));
  ::unsetenv("VQ_TEST_SWITCH");
}

TEST(Tensor, ItemNeedsOneElement) {
  EXPECT_VQ_ERROR(zeros({2}).item(), "the tensor has 2 elements");
}

}  // namespace
}  // namespace vq
