// Model-level CUDA checks, against the same computation on the CPU: the fmnist VQModel and the
// PatchGAN forward and backward on the same weights and batch, the quantizer's sampling and EMA
// update, one whole training step, Module::to, device-mismatch errors, and the allocator's
// release-and-retry under a memory limit. Each skips (with the reason) without a GPU.
// Tolerances: float32 on both devices; cuDNN and oneDNN sum convolutions in different orders, so
// values agree to about 1e-5 relative per layer and the differences grow through ~30 layers.
#include <map>

#include "autograd/node.h"
#include "models/patch_discriminator.h"
#include "models/vqgan.h"
#include "test_util.h"
#include "trainers/config.h"
#include "trainers/train_step.h"

#if VQ_WITH_CUDA_BACKEND
#include "cuda/allocator.h"
#include "cuda/cuda_settings.h"
#endif
#if VQ_WITH_NCCL
#include "cuda/nccl_communicator.h"
#endif

namespace vq {
namespace {

using test::allclose;

const Device kGpu{DeviceType::CUDA, 0};

train::TrainConfig fmnist_config() {
  train::TrainConfig c = train::preset_config("improved", "fmnist");
  c.loss.disc_start = 0;
  return c;
}

// Two identical VQModels (same seed), one moved to the GPU.
struct ModelPair {
  std::shared_ptr<models::VQModel> cpu, gpu;
  explicit ModelPair(const train::TrainConfig& c) {
    manual_seed(5);
    cpu = std::make_shared<models::VQModel>(c.model, c.quantizer, 5);
    manual_seed(5);
    gpu = std::make_shared<models::VQModel>(c.model, c.quantizer, 5);
    gpu->to(kGpu);
  }
};

::testing::AssertionResult same_grads(const nn::Module& cpu, const nn::Module& gpu, double atol,
                                      double rtol) {
  const auto a = cpu.named_parameters(), b = gpu.named_parameters();
  int compared = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].second.grad().defined()) continue;
    ++compared;
    if (!b[i].second.grad().defined())
      return ::testing::AssertionFailure() << "no CUDA gradient for " << b[i].first;
    if (auto r = allclose(b[i].second.grad().cpu(), a[i].second.grad(), atol, rtol); !r)
      return r << " (gradient of " << a[i].first << ")";
  }
  if (compared == 0) return ::testing::AssertionFailure() << "no gradients to compare";
  return ::testing::AssertionSuccess();
}

// The share of equal entries of two index lists.
double agreement(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  int64_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return static_cast<double>(same) / static_cast<double>(a.size());
}

TEST(CudaModel, VQModelForwardAndBackwardMatchCpu) {
  VQ_SKIP_WITHOUT_CUDA();
  train::TrainConfig c = fmnist_config();
  c.quantizer.temperature = 0.0;  // nearest codes: the same on both devices unless near a tie
  c.quantizer.init = "normal";    // well-separated codes (the uniform +-1/K ones are near-equal)
  ModelPair m(c);
  const Tensor x = clamp(test::randn32({4, 1, 32, 32}, 3), -1.0, 1.0);
  const auto out_cpu = m.cpu->forward(x);
  const auto out_gpu = m.gpu->forward(x.to(kGpu));
  EXPECT_EQ(out_gpu.reconstruction.device(), kGpu);
  const auto idx_cpu = out_cpu.quant.indices.to_vector<int64_t>();
  const auto idx_gpu = out_gpu.quant.indices.cpu().to_vector<int64_t>();
  // A last-bit difference in the encoder output may flip a near-tie: allow 1 in 100.
  const double agree = agreement(idx_gpu, idx_cpu);
  EXPECT_GE(agree, 0.99);
  if (agree < 1.0) GTEST_SKIP() << "codes differ at a near-tie; values and gradients not compared";
  EXPECT_TRUE(allclose(out_gpu.reconstruction.cpu(), out_cpu.reconstruction, 1e-3, 1e-3));
  add(l1_loss(out_cpu.reconstruction, x), out_cpu.quant.loss).backward();
  add(l1_loss(out_gpu.reconstruction, x.to(kGpu)), out_gpu.quant.loss).backward();
  EXPECT_TRUE(same_grads(*m.cpu, *m.gpu, 1e-4, 1e-2));
  // The EMA statistics saw the same assignments.
  const auto q_cpu = m.cpu->quantizer().state_dict(), q_gpu = m.gpu->quantizer().state_dict();
  for (size_t i = 0; i < q_cpu.size(); ++i) {
    if (!is_floating(q_cpu[i].second.dtype())) continue;
    EXPECT_TRUE(allclose(q_gpu[i].second.cpu(), q_cpu[i].second, 1e-5, 1e-4)) << q_cpu[i].first;
  }
}

TEST(CudaModel, PatchGanForwardAndBackwardMatchCpu) {
  VQ_SKIP_WITHOUT_CUDA();
  Generator gen_a(8), gen_b(8);
  models::NLayerDiscriminator cpu(1, 64, 3, gen_a), gpu(1, 64, 3, gen_b);
  gpu.to(kGpu);
  const Tensor x = clamp(test::randn32({4, 1, 32, 32}, 9), -1.0, 1.0);
  const Tensor y_cpu = cpu.forward(x), y_gpu = gpu.forward(x.to(kGpu));
  EXPECT_TRUE(allclose(y_gpu.cpu(), y_cpu, 1e-4, 1e-3));
  sum(y_cpu).backward();
  sum(y_gpu).backward();
  EXPECT_TRUE(same_grads(cpu, gpu, 1e-4, 1e-3));
}

// Temperature sampling draws the same Philox numbers on both devices, so the sampled codes agree
// except where a last-bit difference in a distance flips a near-tie (allowed: 1 in 100).
TEST(CudaModel, QuantizerSamplingAndEmaUpdateMatchCpu) {
  VQ_SKIP_WITHOUT_CUDA();
  models::QuantizerConfig q;
  q.n_embed = 64;
  q.temperature = 2.5;
  q.init = "normal";
  auto cpu = models::make_quantizer(q, 32, 4), gpu = models::make_quantizer(q, 32, 4);
  gpu->to(kGpu);
  cpu->set_step(7);
  gpu->set_step(7);
  const Tensor z = test::randn32({8, 32, 8, 8}, 10);
  const auto a = cpu->forward(z).indices.to_vector<int64_t>();
  const auto b = gpu->forward(z.to(kGpu)).indices.cpu().to_vector<int64_t>();
  const double agree = agreement(a, b);
  EXPECT_GE(agree, 0.99);
  // One flipped sample moves two codes' counts by (1 - decay): compare the EMA only without flips.
  if (agree < 1.0) GTEST_SKIP() << "a sample flipped at a near-tie; the EMA update not compared";
  const auto s_cpu = cpu->state_dict(), s_gpu = gpu->state_dict();
  for (size_t i = 0; i < s_cpu.size(); ++i) {
    if (!is_floating(s_cpu[i].second.dtype())) continue;
    EXPECT_TRUE(allclose(s_gpu[i].second.cpu(), s_cpu[i].second, 1e-5, 1e-4)) << s_cpu[i].first;
  }
}

// One whole training step (generator with the adaptive adversarial weight, Adam, discriminator)
// gives the same loss and nearly the same weights on both devices.
TEST(CudaModel, TrainingStepMatchesCpu) {
  VQ_SKIP_WITHOUT_CUDA();
  train::TrainConfig c = fmnist_config();
  train::TrainStep cpu(c, kCPU), gpu(c, kGpu);
  const Tensor x = clamp(test::randn32({8, 1, 32, 32}, 11), -1.0, 1.0);
  const auto r_cpu = cpu.run(x, 0, 1.0, 2e-4), r_gpu = gpu.run(x.to(kGpu), 0, 1.0, 2e-4);
  EXPECT_NEAR(r_gpu.loss, r_cpu.loss, 1e-3 * std::abs(r_cpu.loss));
  EXPECT_NEAR(r_gpu.d_loss, r_cpu.d_loss, 1e-3 * std::abs(r_cpu.d_loss) + 1e-6);
  const auto a = cpu.model().state_dict(), b = gpu.model().state_dict();
  for (size_t i = 0; i < a.size(); ++i) {
    // Adam moves each weight by about lr = 2e-4 whatever the gradient's size, so weights agree
    // to a few lr where a gradient's sign is uncertain.
    EXPECT_TRUE(allclose(b[i].second.cpu(), a[i].second, 1e-3, 1e-3)) << a[i].first;
  }
}

// Mixed precision on the GPU: a few training steps in bfloat16 and in float16 (with its loss
// scaler) from the same start as float32. The first step's loss sees the same weights and batch,
// so it differs only by the rounded convolutions (~0.2% per bfloat16 input; 2% allowed); after 8
// steps of Adam the losses stay within 10% and every weight is finite. float16 may skip early
// steps while the loss scale comes down; they are counted, not failures.
TEST(CudaModel, MixedPrecisionStepsTrackFloat32) {
  VQ_SKIP_WITHOUT_CUDA();
  train::TrainConfig c = fmnist_config();
  const Tensor x = clamp(test::randn32({8, 1, 32, 32}, 12), -1.0, 1.0).to(kGpu);
  std::map<DType, std::vector<double>> losses;
  for (DType precision : {DType::Float32, DType::BFloat16, DType::Float16}) {
    const std::string why_not = backend_for(kGpu).why_no_low_precision(precision);
    if (precision != DType::Float32 && !why_not.empty()) {
      fmt::print("skipping {}: {}\n", dtype_name(precision), why_not);
      continue;
    }
    train::TrainStep step(c, kGpu, precision);
    EXPECT_EQ(step.generator_scaler() != nullptr, precision == DType::Float16);
    for (int i = 0; i < 8; ++i) {
      const auto r = step.run(x, i, 1.0, 2e-4);
      if (r.generator_skipped) {
        EXPECT_TRUE(r.loss_scale_overflow) << r.nonfinite;
      }
      losses[precision].push_back(r.loss);
    }
    for (const auto& [name, t] : step.model().state_dict()) {
      if (is_floating(t.dtype())) {
        EXPECT_TRUE(nn::all_finite({t})) << name;
      }
    }
  }
  for (const auto& [precision, l] : losses) {
    EXPECT_NEAR(l.front(), losses[DType::Float32].front(), 0.02 * losses[DType::Float32].front())
        << dtype_name(precision);
    EXPECT_NEAR(l.back(), losses[DType::Float32].back(), 0.1 * losses[DType::Float32].back())
        << dtype_name(precision);
  }
}

TEST(CudaModel, ToMovesEveryTensorAndDeviceMismatchIsAnError) {
  VQ_SKIP_WITHOUT_CUDA();
  ModelPair m(fmnist_config());
  for (const auto& [name, t] : m.gpu->state_dict()) EXPECT_EQ(t.device(), kGpu) << name;
  EXPECT_VQ_ERROR(m.gpu->forward(zeros({1, 1, 32, 32})), "on different devices");
  EXPECT_VQ_ERROR(add(ones({2}), ones({2}, DType::Float32, kGpu)),
                  "different devices (cpu and cuda:0)");
}

#if VQ_WITH_CUDA_BACKEND
// A limit far below the GPU's size exercises the out-of-memory path: a cached block is given
// back and the allocation retried, and past the limit the error says so.
TEST(CudaModel, AllocatorReleasesTheCacheAndRetriesUnderALimit) {
  VQ_SKIP_WITHOUT_CUDA();
  auto& alloc = cuda::CachingAllocator::instance();
  alloc.empty_cache();
  const size_t base = alloc.stats().reserved;
  struct LimitGuard {  // later tests must not inherit the limit, even if this one throws
    ~LimitGuard() { cuda::set_memory_limit(0); }
  } guard;
  cuda::set_memory_limit(base + (size_t{64} << 20));
  { const Tensor a = Tensor::empty({10 << 20}, DType::Float32, kGpu); }  // 40 MiB, now cached
  EXPECT_GE(alloc.stats().cached, size_t{40} << 20);
  const size_t mallocs = alloc.stats().device_mallocs;
  {
    // 48 MiB does not fit beside the cached 40 MiB block: release, retry, succeed.
    const Tensor b = Tensor::empty({12 << 20}, DType::Float32, kGpu);
    EXPECT_EQ(alloc.stats().cached, 0u);
    EXPECT_EQ(alloc.stats().device_mallocs, mallocs + 1);
  }
  EXPECT_VQ_ERROR(Tensor::empty({32 << 20}, DType::Float32, kGpu),
                  "The allocator's memory limit is");
  EXPECT_EQ(sum(ones({3}, DType::Float32, kGpu)).item(), 3.0);
}
#endif

#if VQ_WITH_NCCL
// One GPU allows only a world of one NCCL rank (NCCL refuses two ranks on one device): its
// collectives leave CUDA tensors as they are, in place and through views, and hand CPU tensors
// to the host communicator.
TEST(CudaNccl, OneRankCollectivesRunOnTheGpu) {
  VQ_SKIP_WITHOUT_CUDA();
  auto comm = cuda::make_nccl_communicator(dist::shared_world(), kGpu);
  EXPECT_NE(comm->describe().find("NCCL"), std::string::npos) << comm->describe();
  const Tensor t = from_vector<float>({1.5f, -2.0f, 4.0f, 8.0f}, {2, 2}).to(kGpu);
  comm->all_reduce_sum(t);
  comm->all_reduce_sum(t.t());  // a non-contiguous view
  comm->broadcast(t, 0);
  EXPECT_TRUE(allclose(t.cpu(), from_vector<float>({1.5f, -2.0f, 4.0f, 8.0f}, {2, 2}), 0, 0));
  const Tensor gathered = comm->all_gather(t);
  EXPECT_EQ(gathered.device(), kGpu);
  EXPECT_TRUE(allclose(gathered.cpu(), t.cpu(), 0, 0));
  const Tensor host = full({3}, 2.0);
  comm->all_reduce_sum(host);
  EXPECT_TRUE(allclose(host, full({3}, 2.0), 0, 0));
  EXPECT_VQ_ERROR(comm->all_reduce_sum(zeros({2}, DType::UInt8, kGpu)),
                  "NCCL collectives do not take uint8 tensors");
}
#endif

}  // namespace
}  // namespace vq
