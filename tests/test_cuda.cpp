// The CUDA backend against the CPU reference. Every op's cases come from the op table
// (tests/op_table.h): one test per op runs them on both devices with the same inputs, each within
// its stated tolerance, float64 forward and backward passes comparing every input's gradient.
// Written out here is what a case cannot say: transfers and device-mismatch errors, factories,
// casts and random streams, TF32, the rounding model of autocast convolutions, deterministic
// accumulation, the optimizer step, a small network, the caching allocator. Every test skips (with
// the reason) without a GPU, except the one that checks the error a user gets on such a machine.
#include "autograd/autocast.h"
#include "autograd/low_precision_copy.h"
#include "test_util.h"
#include "tests/op_table.h"

#if VQ_WITH_CUDA_BACKEND
#include "cuda/allocator.h"
#include "cuda/cuda_settings.h"
#endif

namespace vq {
namespace {

using test::allclose;
using test::randn32;
using test::randn64;

const Device kCuda{DeviceType::CUDA, 0};

// VQ_TEST_LOOPBACK=1: every "cuda" tensor of this program lives on the loopback device (the CPU
// kernels in their own memory), so every test below runs on machines without a GPU too, except
// the CUDA-only ones that test::loopback_skip_reason lists.
class LoopbackEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* v = std::getenv("VQ_TEST_LOOPBACK");
    if (v != nullptr && std::string(v) != "0") use_loopback_for_cuda();
  }
};
[[maybe_unused]] const auto* const loopback_environment =
    ::testing::AddGlobalTestEnvironment(new LoopbackEnvironment);
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// fn on the CPU inputs and on CUDA copies of them: the CUDA result must stay on the GPU and
// match within atol + rtol * |expected|.
::testing::AssertionResult cuda_matches_cpu(const Fn& fn, const std::vector<Tensor>& inputs,
                                            double atol, double rtol) {
  std::vector<Tensor> gpu;
  for (const Tensor& t : inputs) gpu.push_back(t.to(kCuda));
  const Tensor expected = fn(inputs);
  const Tensor actual = fn(gpu);
  if (actual.device() != kCuda) {
    return ::testing::AssertionFailure() << "result is on " << actual.device().str();
  }
  return allclose(actual, expected, atol, rtol);
}

// Forward and backward of fn on both devices (float64 leaves; integer inputs such as indices pass
// through): the outputs and the gradient of sum(v * fn(x)) w.r.t. every floating input agree.
::testing::AssertionResult grads_match(const Fn& fn, const std::vector<Tensor>& inputs,
                                       double atol = 1e-10, double rtol = 1e-9) {
  auto run = [&](Device device, std::vector<Tensor>& grads) {
    std::vector<Tensor> leaves;
    for (const Tensor& t : inputs) {
      Tensor leaf = t.to(device).clone().detach();
      if (is_floating(leaf.dtype())) leaf.requires_grad_(true);
      leaves.push_back(leaf);
    }
    const Tensor out = fn(leaves);
    Generator gen(77);
    sum(mul(out, randn(out.shape(), gen, out.dtype()).to(device))).backward();
    for (const Tensor& leaf : leaves) grads.push_back(leaf.grad());
    return out.detach();
  };
  std::vector<Tensor> cpu_grads, gpu_grads;
  const Tensor cpu_out = run(kCPU, cpu_grads), gpu_out = run(kCuda, gpu_grads);
  if (auto r = allclose(gpu_out, cpu_out, atol, rtol); !r) return r << " (forward)";
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!cpu_grads[i].defined()) continue;
    if (!gpu_grads[i].defined()) return ::testing::AssertionFailure() << "no CUDA grad " << i;
    if (auto r = allclose(gpu_grads[i], cpu_grads[i], atol, rtol); !r) {
      return r << " (gradient of input " << i << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

// ---- availability, transfers, devices ----

TEST(CudaAvailability, ClearErrorWithoutGpu) {
  VQ_SKIP_ON_LOOPBACK();
  if (cuda_available()) GTEST_SKIP() << "a GPU is present; this checks the message without one";
#if VQ_WITH_CUDA_BACKEND
  // The backend must be registered by its static initializer (vq_backends links it whole).
  ASSERT_TRUE(backend_registered(DeviceType::CUDA));
#endif
  if (backend_registered(DeviceType::CUDA)) {
    EXPECT_VQ_ERROR(zeros({2}, DType::Float32, parse_device("cuda")), "no usable GPU was found");
  } else {
    EXPECT_VQ_ERROR(zeros({2}, DType::Float32, parse_device("cuda")),
                    "this build has no CUDA backend");
  }
}

TEST(CudaTransfer, RoundTripsEveryDtype) {
  VQ_SKIP_WITHOUT_CUDA();
  const Tensor x = randn32({3, 5}, 1);
  for (DType dt : {DType::Float32, DType::Float64, DType::Int64, DType::UInt8, DType::Float16,
                   DType::BFloat16}) {
    const Tensor host = mul(abs(x), 10.0).to(dt);
    const Tensor back = host.to(kCuda).to(kCPU);
    EXPECT_EQ(back.device(), kCPU);
    EXPECT_TRUE(allclose(back.to(DType::Float64), host.to(DType::Float64), 0, 0))
        << dtype_name(dt);  // bytes are copied: exact
  }
  // Non-contiguous views go through a strided copy on the side they live.
  const Tensor t = randn64({4, 6}, 2).transpose(0, 1);
  EXPECT_TRUE(allclose(t.to(kCuda).to(kCPU), t, 0, 0));
  EXPECT_TRUE(allclose(t.to(kCuda).transpose(0, 1).contiguous(), t.transpose(0, 1), 0, 0));
  EXPECT_EQ(full({1}, 2.5, DType::Float32, kCuda).item(), 2.5);
  // copy_ across devices into a strided destination
  Tensor dst = zeros({6, 4}, DType::Float64, kCuda);
  dst.transpose(0, 1).copy_(t.transpose(0, 1));
  EXPECT_TRUE(allclose(dst, t, 0, 0));
}

// A value read from the device counts once as a host read, however it is read.
TEST(CudaTransfer, HostReadsCountOncePerTransfer) {
  VQ_SKIP_WITHOUT_CUDA();
  const Tensor x = ones({4}).to(kCuda);
  const DispatchCounts before = dispatch_counts();
  (void)sum(x).item();
  (void)x.cpu();
  (void)x.to_vector<float>();
  EXPECT_EQ(dispatch_counts().host_reads - before.host_reads, 3);
}

TEST(CudaTransfer, MismatchedDevicesAreAnError) {
  VQ_SKIP_WITHOUT_CUDA();
  const Tensor a = ones({2, 2}), b = ones({2, 2}, DType::Float32, kCuda);
  EXPECT_VQ_ERROR(add(a, b), "on different devices");
  EXPECT_VQ_ERROR(matmul(b, a), "on different devices");
  EXPECT_VQ_ERROR(conv2d(ones({1, 1, 3, 3}), ones({1, 1, 3, 3}, DType::Float32, kCuda)),
                  "on different devices");
  // The refused index comes from the real count (the loopback device pretends to be two GPUs).
  const int gpus = gpu_count();
  EXPECT_VQ_ERROR(zeros({1}, DType::Float32, Device{DeviceType::CUDA, gpus}),
                  fmt::format("cuda:{} was requested, but only {} GPU(s) are visible", gpus, gpus));
  // One GPU per process: kCuda (cuda:0) was chosen above; another GPU is refused by name.
  if (gpus > 1) {
    EXPECT_VQ_ERROR(zeros({1}, DType::Float32, Device{DeviceType::CUDA, 1}),
                    "cuda:1 was requested, but this process computes on cuda:0");
  }
}

// ---- factories, copies, random streams ----

TEST(CudaFactory, FillArangeAndConversionsMatchCpuExactly) {
  VQ_SKIP_WITHOUT_CUDA();
  // Same conversion code paths (through double, halves via float with round-to-nearest-even):
  // results are bit-identical.
  for (DType dt : {DType::Float32, DType::Float64, DType::Int64, DType::UInt8}) {
    EXPECT_TRUE(allclose(arange(3, 300, dt, kCuda), arange(3, 300, dt), 0, 0));
    EXPECT_TRUE(allclose(full({7, 3}, 42.75, dt, kCuda), full({7, 3}, 42.75, dt), 0, 0));
  }
  const Tensor v = mul(randn32({1000}, 3), 300.0);    // includes values beyond float16's precision
  const Tensor small = mul(randn32({200}, 4), 1e-6);  // float16 subnormals
  for (const Tensor& x : {v, small, abs(v)}) {
    for (DType to : {DType::Float16, DType::BFloat16, DType::Float64}) {
      EXPECT_TRUE(
          allclose(x.to(kCuda).to(to).to(DType::Float32), x.to(to).to(DType::Float32), 0, 0))
          << dtype_name(to);
    }
  }
  // float -> integer conversions truncate; inputs stay in uint8's range to avoid UB
  const Tensor u = mul(abs(randn32({500}, 5)), 40.0);
  for (DType to : {DType::Int64, DType::UInt8}) {
    EXPECT_TRUE(allclose(u.to(kCuda).to(to), u.to(to), 0, 0)) << dtype_name(to);
  }
  // fill_ on a strided view touches only the view
  Tensor g = zeros({4, 6}, DType::Float32, kCuda), c = zeros({4, 6});
  g.narrow(1, 1, 3).transpose(0, 1).fill_(5.0);
  c.narrow(1, 1, 3).transpose(0, 1).fill_(5.0);
  EXPECT_TRUE(allclose(g, c, 0, 0));
}

// float32 <-> bfloat16/float16 on the vectorised path (dense, aligned: four per thread plus a
// tail) and the scalar one (a view starting one element in), bit for bit against the CPU, with
// values that round to even, overflow, underflow to subnormals and zero, and NaN and inf.
TEST(CudaCopy, LowPrecisionCastsMatchCpuBitForBit) {
  VQ_SKIP_WITHOUT_CUDA();
  std::vector<float> special = {0.0f,  -0.0f, 1.0f,  1.00390625f, 1.01171875f, 65504.0f, 65520.0f,
                                1e-8f, 3e-5f, 1e38f, INFINITY,    -INFINITY,   NAN};
  for (int64_t n : {1, 3, 4, 5, 1027}) {
    std::vector<float> v = randn32({n}, 40 + n).to_vector<float>();
    for (size_t i = 0; i < v.size() && i < special.size(); ++i)
      v[i] = special[i] * (i % 2 ? -1 : 1);
    const Tensor x = from_vector<float>(v, {n});
    for (DType low : {DType::BFloat16, DType::Float16}) {
      SCOPED_TRACE(fmt::format("{} elements, {}", n, dtype_name(low)));
      const Fn down = [low](const auto& in) { return in[0].to(low).to(DType::Float32); };
      EXPECT_TRUE(cuda_matches_cpu(down, {x}, 0, 0));
      // float16/bfloat16 -> float32: the widening direction on its own.
      const Tensor lows = x.to(low);
      EXPECT_TRUE(allclose(lows.to(kCuda).to(DType::Float32).cpu(), lows.to(DType::Float32), 0, 0));
      if (n > 1) {
        const Fn offset = [low](const auto& in) {
          return in[0].narrow(0, 1, in[0].size(0) - 1).to(low).to(DType::Float32);
        };
        EXPECT_TRUE(cuda_matches_cpu(offset, {x}, 0, 0));
      }
    }
  }
}

TEST(CudaCopy, BroadcastPermutedAndManyDimViews) {
  VQ_SKIP_WITHOUT_CUDA();
  const Tensor x = randn64({3, 1, 5}, 6);
  EXPECT_TRUE(cuda_matches_cpu(
      [](const std::vector<Tensor>& in) {
        return in[0].expand({3, 4, 5}).contiguous();
      },
      {x}, 0, 0));
  // Ten dims that cannot be merged: more than the kernel's 8, split into several launches.
  const Tensor big = randn32({2, 3, 2, 3, 2, 3, 2, 3, 2, 3}, 7);
  EXPECT_TRUE(cuda_matches_cpu(
      [](const std::vector<Tensor>& in) {
        return in[0].permute({9, 0, 8, 1, 7, 2, 6, 3, 5, 4}).contiguous();
      },
      {big}, 0, 0));
}

// NCHW into channels-last memory and back, with and without a cast (the copies that hand cuDNN its
// channels-last operands and take its results back: shared-memory tiles on CUDA). Sizes that are
// not multiples of the 32x32 tile, a batch of one (a 2-D transpose) and larger planes.
TEST(CudaCopy, ChannelsLastTransposesWithCasts) {
  VQ_SKIP_WITHOUT_CUDA();
  for (const Shape& shape : std::vector<Shape>{{2, 37, 5, 7}, {1, 64, 33, 33}, {3, 130, 20, 20}}) {
    for (DType dt : {DType::Float32, DType::BFloat16, DType::Float16}) {
      SCOPED_TRACE(fmt::format("{} to {}", shape_str(shape), dtype_name(dt)));
      const Fn channels_last = [dt](const auto& in) {
        const Tensor& x = in[0];
        const Tensor cl =
            Tensor::empty({x.size(0), x.size(2), x.size(3), x.size(1)}, dt, x.device())
                .permute({0, 3, 1, 2});
        cl.copy_(x);
        // its memory in order, then back to NCHW float32 (the transpose the other way)
        return concat({cl.permute({0, 2, 3, 1}).to(DType::Float32).reshape({-1}),
                       cl.to(DType::Float32).reshape({-1})},
                      0);
      };
      EXPECT_TRUE(cuda_matches_cpu(channels_last, {randn32(shape, 8)}, 0, 0));
    }
  }
}

// group_norm_silu_for_conv under autocast writes conv2d's 16-bit channels-last operand itself
// (on CUDA one tiled pass from the statistics, which never writes float32; on loopback the
// float32 result and a converting copy). The operand holds exactly group_norm_silu's values
// rounded (the same statistics, affine map, SiLU and rounding), the convolution and every
// gradient equal the two separate ops' (conv2d would have made that same operand), and no op
// but conv2d takes it. Shapes: one 32x32 tile; channels and positions that are not multiples of
// 32 over several tiles each way (both grid orientations of the tiled pass, the model's 512
// channels at 16x16 among them); without affine parameters; and float16 where the device has
// it. Outside autocast it is group_norm_silu, bit for bit.
TEST(CudaNorm, GroupNormSiluWritesTheConvolutionOperand) {
  VQ_SKIP_WITHOUT_CUDA();
  struct Case {
    Shape x;
    int64_t groups;
    bool affine;
    DType low;
  };
  const std::vector<Case> cases = {{{2, 32, 5, 6}, 8, true, DType::BFloat16},
                                   {{2, 96, 3, 5}, 32, true, DType::BFloat16},
                                   {{3, 40, 33, 33}, 8, false, DType::BFloat16},
                                   {{2, 512, 16, 16}, 32, true, DType::BFloat16},
                                   {{2, 64, 9, 7}, 8, true, DType::Float16}};
  std::string missing;
  uint64_t seed = 50;
  Tensor operand;  // the last case's
  for (const Case& c : cases) {
    const std::string why_not = backend_for(kCuda).why_no_low_precision(c.low);
    if (!why_not.empty()) {
      missing += fmt::format("{} ({}) ", dtype_name(c.low), why_not);
      continue;
    }
    SCOPED_TRACE(fmt::format("{} in {} groups{}, {}", shape_str(c.x), c.groups,
                             c.affine ? "" : ", no affine", dtype_name(c.low)));
    const int64_t C = c.x[1];
    const Tensor x = randn32(c.x, ++seed).to(kCuda);
    const Tensor gamma = c.affine ? randn32({C}, ++seed).to(kCuda) : Tensor();
    const Tensor beta = c.affine ? randn32({C}, ++seed).to(kCuda) : Tensor();
    const Tensor w = mul(randn32({16, C, 3, 3}, ++seed), 0.05), b = randn32({16}, ++seed);
    const Shape y_shape{c.x[0], 16, c.x[2], c.x[3]};
    const Tensor r = randn32(y_shape, ++seed), dy = randn32(y_shape, ++seed);
    const Conv2dOptions o{{1, 1}, {1, 1}, {1, 1}};
    auto run = [&](bool for_conv) {
      std::vector<Tensor> in = {x.clone(), w.to(kCuda), b.to(kCuda)};
      if (c.affine) in.insert(in.end(), {gamma.clone(), beta.clone()});
      for (Tensor& t : in) t.requires_grad_();
      const Tensor g = c.affine ? in[3] : Tensor(), bt = c.affine ? in[4] : Tensor();
      Tensor y;
      {
        AutocastScope autocast(c.low);
        const Tensor h = for_conv ? group_norm_silu_for_conv(in[0], c.groups, g, bt)
                                  : group_norm_silu(in[0], c.groups, g, bt);
        if (for_conv) operand = h.detach();
        y = conv2d(h, in[1], in[2], o, r.to(kCuda));
      }
      y.backward(dy.to(kCuda));
      std::vector<Tensor> out = {y.detach().cpu()};
      for (const Tensor& t : in) out.push_back(t.grad().cpu());
      return out;
    };
    const auto separate = run(false), fused = run(true);
    EXPECT_EQ(operand.dtype(), c.low);
    EXPECT_TRUE(is_channels_last(operand));
    EXPECT_EQ(operand.to(DType::Float32).cpu().to_vector<float>(),
              group_norm_silu(x, c.groups, gamma, beta)
                  .to(c.low)
                  .to(DType::Float32)
                  .cpu()
                  .to_vector<float>());
    const char* names[] = {"y", "dx", "dw", "db", "dgamma", "dbeta"};
    for (size_t i = 0; i < separate.size(); ++i)
      EXPECT_TRUE(allclose(fused[i], separate[i], 1e-4, 1e-4)) << names[i];
    EXPECT_EQ(group_norm_silu_for_conv(x, c.groups, gamma, beta).cpu().to_vector<float>(),
              group_norm_silu(x, c.groups, gamma, beta).cpu().to_vector<float>());
  }
  ASSERT_TRUE(operand.defined());
  EXPECT_VQ_ERROR(add(operand, 1.0), "expected a float32 or float64 tensor");
  EXPECT_VQ_ERROR(conv2d(operand, zeros({4, operand.size(1), 1, 1}, DType::Float32, kCuda)),
                  "input must be the channels-last operand group_norm_silu_for_conv");
  test::report_missing_precisions(missing);
}

TEST(CudaRandom, StreamsMatchCpu) {
  VQ_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::Float32, DType::Float64}) {
    Generator cpu_gen(123), gpu_gen(123);
    // uniform: shared Philox bits and explicitly rounded lo + scale * u: bit for bit
    const auto u_cpu = uniform({1001}, -2.0, 3.0, cpu_gen, dt).to_vector<double>();
    const auto u_gpu = uniform({1001}, -2.0, 3.0, gpu_gen, dt, kCuda).to_vector<double>();
    EXPECT_EQ(u_cpu, u_gpu) << dtype_name(dt);
    EXPECT_EQ(cpu_gen.offset(), gpu_gen.offset());
    // normal: same bits, but logf/cosf of the GPU's libm may differ from glibc's by an ulp or two
    const Tensor n_cpu = randn({1001}, cpu_gen, dt);
    const Tensor n_gpu = randn({1001}, gpu_gen, dt, kCuda);
    EXPECT_TRUE(allclose(n_gpu, n_cpu, 1e-6, 1e-6)) << dtype_name(dt);
  }
  Generator a(5), b(5);
  EXPECT_TRUE(allclose(randint(0, 10, {300}, a, kCuda), randint(0, 10, {300}, b), 0, 0));
}

// ---- reductions: what the op table's value comparison cannot show ----

// The squared norm's partial sums are combined in a fixed order (the same bits every call), a NaN
// anywhere reaches the result, and tensors on two devices are refused.
TEST(CudaReduce, SquaredNormIsReproducibleAndPropagatesNaN) {
  VQ_SKIP_WITHOUT_CUDA();
  std::vector<Tensor> gpu;
  for (const Shape& shape : std::vector<Shape>{{4097}, {3000001}, {33, 65}}) {
    gpu.push_back(randn32(shape, 5).to(kCuda));
  }
  EXPECT_EQ(squared_norm(gpu).item(), squared_norm(gpu).item()) << "not reproducible";
  gpu.push_back(from_vector<float>({2, NAN}, {2}).to(kCuda));
  EXPECT_TRUE(std::isnan(squared_norm(gpu).item()));
  EXPECT_VQ_ERROR(squared_norm({randn32({3}, 6), gpu[0]}),
                  "squared_norm: tensors on different devices");
}

// ---- the op table: every case on both devices, one test per op ----

// Each case of tests/op_table.cpp (and op_table_wide.cpp) for the op: float32 within the case's
// tolerance; float64 forward and every input's gradient (differentiable cases) or the float64
// result (the others) within its float64 tolerance.
class OpCaseParity : public ::testing::TestWithParam<std::string> {};

TEST_P(OpCaseParity, MatchesCpu) {
  VQ_SKIP_WITHOUT_CUDA();
  int cases = 0;
  for (const auto& c : test::op_cases()) {
    if (c.op != GetParam()) continue;
    ++cases;
    SCOPED_TRACE(c.name());
    std::vector<Tensor> inputs32;
    for (const Tensor& t : c.inputs) {
      inputs32.push_back(t.dtype() == DType::Float64 ? t.to(DType::Float32) : t);
    }
    EXPECT_TRUE(cuda_matches_cpu(c.fn, inputs32, c.atol32, c.rtol32)) << "float32";
    if (c.differentiable) {
      EXPECT_TRUE(grads_match(c.fn, c.inputs, c.atol64, c.rtol64)) << "float64";
    } else {
      EXPECT_TRUE(cuda_matches_cpu(c.fn, c.inputs, c.atol64, c.rtol64)) << "float64";
    }
  }
  EXPECT_GT(cases, 0);
}

INSTANTIATE_TEST_SUITE_P(Cuda, OpCaseParity, ::testing::ValuesIn(test::op_names()),
                         [](const auto& param_info) { return param_info.param; });

// ---- linear algebra ----

#if VQ_WITH_CUDA_BACKEND
TEST(CudaLinalg, Tf32SwitchIsUsedAndRestored) {
  VQ_SKIP_WITHOUT_CUDA();
  // TF32 rounds operands to 10-bit mantissas: about 2^-11 relative per product, so a 512-term
  // sum is off by ~1e-3 of its terms' scale, where true float32 is within ~1e-5 (checked too):
  // the gap proves the tensor cores were used, and the scope switches TF32 off again.
  const Tensor big_a = randn32({256, 512}, 24), big_b = randn32({512, 256}, 25);
  const Fn mm = [](const auto& in) { return matmul(in[0], in[1]); };
  EXPECT_TRUE(cuda_matches_cpu(mm, {big_a, big_b}, 5e-4, 1e-5));
  {
    cuda::Tf32Scope tf32(true);
    EXPECT_TRUE(cuda_matches_cpu(mm, {big_a, big_b}, 0.2, 1e-2));
    EXPECT_FALSE(cuda_matches_cpu(mm, {big_a, big_b}, 2e-3, 1e-5)) << "TF32 was not used";
  }
  EXPECT_FALSE(cuda::allow_tf32());
  try {
    cuda::Tf32Scope tf32(true);
    throw Error("thrown inside the scope");
  } catch (const Error&) {
  }
  EXPECT_FALSE(cuda::allow_tf32()) << "a throw left TF32 on";
}
#endif

// ---- convolution ----

// One unit in the last place of |v| in the low precision: 2^(floor(log2 |v|) - 7) for bfloat16's
// 8 significant bits, 2^(... - 10) for float16's 11 (float16's subnormals share the smallest).
double low_ulp(double v, DType low) {
  const int bits = low == DType::BFloat16 ? 8 : 11;
  const int min_exp = low == DType::BFloat16 ? -126 : -14;
  const int e = v == 0 ? min_exp : std::max(std::ilogb(std::abs(v)), min_exp);
  return std::ldexp(1.0, e - (bits - 1));
}

// Passes when |actual - expected| <= ulp(rounded_at) + k * sum_abs everywhere: one low-precision
// rounding step taken at `rounded_at` (where the device rounds) plus an accumulation error that
// scales with the sum of the absolute terms `sum_abs` (not with the result, which may cancel).
// Prints the largest (|err| - ulp) / sum_abs seen, the number a change of k must be judged by.
::testing::AssertionResult within_rounding(const Tensor& actual, const Tensor& expected,
                                           const Tensor& rounded_at, const Tensor& sum_abs,
                                           DType low, double k, const std::string& what) {
  const auto a = actual.to_vector<double>(), e = expected.to_vector<double>();
  const auto r = rounded_at.to_vector<double>(), S = sum_abs.to_vector<double>();
  double worst = 0;
  int bad = 0;
  std::string first;
  for (size_t i = 0; i < a.size(); ++i) {
    const double err = std::abs(a[i] - e[i]), ulp = low_ulp(r[i], low);
    worst = std::max(worst, (err - ulp) / S[i]);
    if (!(err <= ulp + k * S[i]) && ++bad <= 5) {
      first +=
          fmt::format("\n  [{}] actual {:.9g} expected {:.9g} (ulp {:.3g}, sum |terms| {:.4g})", i,
                      a[i], e[i], ulp, S[i]);
    }
  }
  fmt::print("{} {}: max (|err| - ulp) / sum|terms| = {:.3g} (k = {:.3g})\n", what, dtype_name(low),
             worst, k);
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << a.size() << " elements of " << what
                                       << " beyond one ulp + k * sum|terms|" << first;
}

// Under autocast cuDNN takes bfloat16 / float16 copies of the operands, accumulates in float32
// and rounds its result to the low precision (converted back to float32; the bias is added after,
// in float32). The reference is the CPU in float64 on the rounded operands. The tolerance is
// derived from how the device forms each result:
//   one low-precision ulp of the value it rounds: the pre-bias convolution for y (a flip there is
//     one ulp of conv(x, w), which can dwarf a tolerance relative to |conv + bias|), dx and dw;
//   plus the accumulation error, bounded by k times the sum of the absolute terms: conv(|x|, |w|)
//     for y, the transposed convolution of |dy| with |w| for dx, |x| correlated with |dy| for dw.
//     Float32 sums in another order: k = 2^-16 (~256 float32 epsilons for these 576-term sums).
//     Measured on the H200 (2026-12-04): at most 7e-9 (y, dx) and 6e-7 (dw) of the sum of |terms|
//     beyond one ulp, in both precisions.
// Operands that were not rounded reached 7e-4 (bfloat16) and 8e-5 (float16) of the sum of |terms|
// there, far above 2^-16 = 1.5e-5: the same bounds reject them (checked for y, dx and dw).
TEST(CudaConv, AutocastMatchesCpuOnRoundedOperands) {
  VQ_SKIP_WITHOUT_CUDA();
  std::string missing;
  for (DType low : {DType::BFloat16, DType::Float16}) {
    const std::string why_not = backend_for(kCuda).why_no_low_precision(low);
    if (!why_not.empty()) {
      missing += fmt::format("{} ({}) ", dtype_name(low), why_not);
      continue;
    }
    const auto rounded = [low](const Tensor& t) { return t.to(low).to(DType::Float64); };
    const Conv2dOptions o{{1, 1}, {1, 1}, {1, 1}};
    const Tensor x = randn64({4, 64, 12, 12}, 31), w = mul(randn64({64, 64, 3, 3}, 32), 0.05);
    const Tensor b = randn64({64}, 33), dy = randn64({4, 64, 12, 12}, 34);
    Tensor xg = x.to(DType::Float32).to(kCuda).requires_grad_(),
           wg = w.to(DType::Float32).to(kCuda).requires_grad_(),
           bg = b.to(DType::Float32).to(kCuda).requires_grad_();
    Tensor y;
    {
      AutocastScope autocast(low);
      y = conv2d(xg, wg, bg, o);
    }
    EXPECT_EQ(y.dtype(), DType::Float32);
    y.backward(dy.to(DType::Float32).to(kCuda));
    // The exact products of the rounded operands, and the sums of their absolute terms.
    auto reference = [&](const Tensor& xs, const Tensor& ws, const Tensor& dys) {
      Tensor xr = xs.detach().requires_grad_(), wr = ws.detach().requires_grad_();
      const Tensor yr = conv2d(xr, wr, Tensor(), o);
      yr.backward(dys);
      return std::array<Tensor, 3>{yr.detach(), xr.grad(), wr.grad()};
    };
    const auto [v, dx, dw] = reference(rounded(x), rounded(w), rounded(dy));
    const auto [S_y, S_dx, S_dw] = reference(abs(rounded(x)), abs(rounded(w)), abs(rounded(dy)));
    const Tensor y_ref = add(rounded(v), b.reshape({1, 64, 1, 1}));
    const double k = std::ldexp(1.0, -16);
    EXPECT_TRUE(within_rounding(y.cpu(), y_ref, v, S_y, low, k, "y"));
    EXPECT_TRUE(within_rounding(xg.grad().cpu(), rounded(dx), dx, S_dx, low, k, "dx"));
    EXPECT_TRUE(within_rounding(wg.grad().cpu(), rounded(dw), dw, S_dw, low, k, "dw"));
    // The bias gradient sums the float32 dy itself.
    EXPECT_TRUE(allclose(bg.grad().cpu(), sum(dy, {0, 2, 3}), 1e-4, 1e-5)) << "db";
    // The same bounds reject a device that skipped rounding the operands (modelled by the exact
    // product of the unrounded operands).
    const auto [v_u, dx_u, dw_u] = reference(x, w, dy);
    EXPECT_FALSE(within_rounding(add(rounded(v_u), b.reshape({1, 64, 1, 1})), y_ref, v, S_y, low, k,
                                 "y from unrounded operands"));
    EXPECT_FALSE(within_rounding(rounded(dx_u), rounded(dx), dx, S_dx, low, k,
                                 "dx from unrounded operands"));
    EXPECT_FALSE(within_rounding(rounded(dw_u), rounded(dw), dw, S_dw, low, k,
                                 "dw from unrounded operands"));
  }
  test::report_missing_precisions(missing);
}

// ---- deterministic accumulation ----

// Under set_deterministic the accumulating kernels add in index order, as the CPU's loops do:
// bit-equal to the CPU however many duplicates, and a convolution's gradients repeat exactly.
TEST(CudaIndex, DeterministicAccumulationIsBitEqualToCpu) {
  VQ_SKIP_WITHOUT_CUDA();
  struct Deterministic {
    Deterministic() { set_deterministic(true); }
    ~Deterministic() { set_deterministic(false); }
  } scope;
  Generator gen(10);
  const Tensor many = randint(0, 7, {3000}, gen);  // ~430 contributions per row
  EXPECT_TRUE(grads_match([](const auto& in) { return index_add(in[0], 0, in[2], in[1]); },
                          {randn64({7, 5}, 40), randn64({3000, 5}, 41), many}, 0, 0));
  EXPECT_TRUE(grads_match([](const auto& in) { return embedding(in[0], in[1]); },
                          {randn64({7, 3}, 42), many.reshape({30, 100})}, 0, 0));
  const Tensor gidx = randint(0, 3, {2, 40, 3}, gen);
  EXPECT_TRUE(grads_match([](const auto& in) { return scatter_add(in[0], 1, in[2], in[1]); },
                          {randn64({2, 3, 3}, 43), randn64({2, 40, 3}, 44), gidx}, 0, 0));
  // Overlapping windows: an input element can win several of them.
  const Tensor plateau = add(mul(randn64({2, 3, 9, 8}, 45), 1e-3), 1.0);
  EXPECT_TRUE(grads_match([](const auto& in) { return max_pool2d(in[0], 3, 1); }, {plateau}, 0, 0));
  EXPECT_TRUE(grads_match([](const auto& in) { return max_pool2d(in[0], 3, 2); }, {plateau}, 0, 0));
  // cuDNN's deterministic algorithms: two backward passes give the same bits.
  const Tensor x = randn64({4, 8, 16, 16}, 46).to(DType::Float32).to(kCuda);
  const Tensor w = randn64({16, 8, 3, 3}, 47).to(DType::Float32).to(kCuda).requires_grad_();
  auto dw = [&] { return grad(sum(conv2d(x, w, Tensor(), {.padding = {1, 1}})), {w}, false)[0]; };
  EXPECT_TRUE(allclose(dw(), dw(), 0, 0));
}

// ---- optimizer ----

TEST(CudaOptim, FusedAdamMatchesCpu) {
  VQ_SKIP_WITHOUT_CUDA();
  for (bool decoupled : {false, true}) {
    for (DType dt : {DType::Float32, DType::Float64}) {
      Tensor p_cpu = randn64({257}, 39).to(dt), m_cpu = zeros({257}, dt), v_cpu = zeros({257}, dt);
      Tensor p_gpu = p_cpu.to(kCuda), m_gpu = m_cpu.to(kCuda), v_gpu = v_cpu.to(kCuda);
      for (int64_t step = 1; step <= 5; ++step) {
        const Tensor g = randn64({257}, 40 + step).to(dt);
        const AdamStep hp{1e-2, 0.9, 0.999, 1e-8, 0.05, step, decoupled};
        adam_step_(p_cpu, g, m_cpu, v_cpu, hp);
        adam_step_(p_gpu, g.to(kCuda), m_gpu, v_gpu, hp);
      }
      // float32: FMA contraction on the GPU changes the last bit of each step
      const double tol = dt == DType::Float32 ? 1e-6 : 1e-14;
      EXPECT_TRUE(allclose(p_gpu, p_cpu, tol, tol)) << "decoupled " << decoupled;
      EXPECT_TRUE(allclose(m_gpu, m_cpu, tol, tol));
      EXPECT_TRUE(allclose(v_gpu, v_cpu, tol, tol));
    }
  }
}

// The multi-tensor step (two launches for 60 tensors of sizes 0 to ~70k) gives the one-tensor
// step's bits.
TEST(CudaOptim, MultiTensorAdamEqualsOneTensorAdam) {
  VQ_SKIP_WITHOUT_CUDA();
  std::vector<AdamTensors> multi;
  std::vector<Tensor> single;
  for (int64_t k = 0; k < 60; ++k) {
    const int64_t n = k == 7 ? 0 : (k * 1153) % 70001;
    const Tensor p = randn64({n}, 60 + k).to(DType::Float32).to(kCuda);
    const Tensor g = randn64({n}, 160 + k).to(DType::Float32).to(kCuda);
    multi.push_back({p.clone(), g, zeros_like(p), zeros_like(p)});
    single.push_back(p.clone());
  }
  std::vector<Tensor> m1, v1;
  for (const Tensor& p : single) {
    m1.push_back(zeros_like(p));
    v1.push_back(zeros_like(p));
  }
  for (int64_t step = 1; step <= 3; ++step) {
    const AdamStep hp{1e-2, 0.9, 0.999, 1e-8, 0.05, step, true};
    adam_step_(multi, hp);
    for (size_t k = 0; k < single.size(); ++k)
      adam_step_(single[k], multi[k].grad, m1[k], v1[k], hp);
  }
  for (size_t k = 0; k < single.size(); ++k) {
    EXPECT_TRUE(allclose(multi[k].param, single[k], 0, 0)) << k;
    EXPECT_TRUE(allclose(multi[k].exp_avg_sq, v1[k], 0, 0)) << k;
  }
}

// ---- a small network end to end ----

TEST(CudaNetwork, ResBlockStyleStackGradientsMatchCpu) {
  VQ_SKIP_WITHOUT_CUDA();
  const Tensor x = randn64({2, 4, 6, 6}, 50), w1 = mul(randn64({8, 4, 3, 3}, 51), 0.3);
  const Tensor b1 = randn64({8}, 52), w2 = mul(randn64({4, 8, 1, 1}, 53), 0.3);
  const Tensor gw = randn64({8}, 54), gb = randn64({8}, 55), target = randn64({2, 4, 12, 12}, 56);
  EXPECT_TRUE(grads_match(
      [](const auto& in) {
        Tensor h = conv2d(in[0], in[1], in[2], {{1, 1}, {1, 1}, {1, 1}});
        h = silu(group_norm(h, 4, in[3], in[4]));
        h = upsample_nearest2d(conv2d(h, in[5]), 2);
        return mse_loss(add(h, 1.0), in[6]);
      },
      {x, w1, b1, gw, gb, w2, target}, 1e-9, 1e-8));
}

// ---- the caching allocator ----

#if VQ_WITH_CUDA_BACKEND
TEST(CudaAllocator, SizeClassesStatsAndReuse) {
  VQ_SKIP_WITHOUT_CUDA();
  using cuda::CachingAllocator;
  EXPECT_EQ(CachingAllocator::round_size(0), 512u);
  EXPECT_EQ(CachingAllocator::round_size(513), 1024u);
  EXPECT_EQ(CachingAllocator::round_size(size_t{1} << 20), size_t{1} << 20);
  EXPECT_EQ(CachingAllocator::round_size((size_t{1} << 20) + 1), size_t{2} << 20);
  EXPECT_EQ(CachingAllocator::round_size(size_t{5} << 20), size_t{6} << 20);

  CachingAllocator& alloc = CachingAllocator::instance();
  alloc.empty_cache();
  const cuda::AllocatorStats before = alloc.stats();
  EXPECT_EQ(before.cached, 0u);
  {
    const Tensor t = Tensor::empty({1000}, DType::Float32, kCuda);  // 4000 B -> the 4096 class
    const cuda::AllocatorStats during = alloc.stats();
    EXPECT_EQ(during.allocated - before.allocated, 4096u);
    EXPECT_EQ(during.requested - before.requested, 4000u);
    EXPECT_GE(during.reserved, during.allocated);
    EXPECT_GE(during.peak_allocated, during.allocated);
  }
  const cuda::AllocatorStats after = alloc.stats();
  EXPECT_EQ(after.allocated, before.allocated);
  EXPECT_EQ(after.cached, 4096u);  // kept for reuse, still reserved
  {
    const Tensor t = Tensor::empty({1010}, DType::Float32, kCuda);  // same class: a cache hit
    EXPECT_EQ(alloc.stats().cache_hits, after.cache_hits + 1);
    EXPECT_EQ(alloc.stats().device_mallocs, after.device_mallocs);
  }
  alloc.empty_cache();
  const cuda::AllocatorStats emptied = alloc.stats();
  EXPECT_EQ(emptied.cached, 0u);
  EXPECT_EQ(emptied.reserved, emptied.allocated);  // only live blocks stay reserved
}

TEST(CudaAllocator, OutOfMemoryIsAClearError) {
  VQ_SKIP_WITHOUT_CUDA();
  const int64_t huge = int64_t{1} << 40;  // 1 TiB: more than any GPU has
  EXPECT_VQ_ERROR(Tensor::empty({huge}, DType::UInt8, kCuda), "CUDA out of memory");
  EXPECT_VQ_ERROR(Tensor::empty({huge}, DType::UInt8, kCuda), "1099511627776 bytes requested");
  // The failure is not sticky: the device keeps working.
  EXPECT_EQ(sum(ones({3}, DType::Float32, kCuda)).item(), 3.0);
}
#endif

}  // namespace
}  // namespace vq
