// The communicator's collectives and the differentiable all-reduce, checked against closed forms
// in the rank r and world size N. ctest runs this program under `mpirun -np 2` (and once as a
// single process, where every collective is the identity).
#include <gtest/gtest.h>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/dist/communicator.h"
#include "test_util.h"
#include "trainer_fixture.h"
#include "trainers/train_step.h"

namespace vq::dist {
namespace {

using test::allclose;

// The GPU each rank takes, for machines this one is not (a faked GPU count): its local rank,
// never a shared GPU, and a clear refusal when a machine runs more ranks than it has GPUs.
TEST(DataParallel, EachRankTakesTheGpuOfItsLocalRank) {
  for (int local = 0; local < 8; ++local) EXPECT_EQ(gpu_for_local_rank(local, 8, 8), local);
  EXPECT_EQ(gpu_for_local_rank(1, 2, 4), 1);  // fewer ranks than GPUs: the first ones
  EXPECT_VQ_ERROR(gpu_for_local_rank(0, 4, 2),
                  "this machine runs 4 ranks but has 2 GPU(s); every rank needs its own GPU");
  EXPECT_VQ_ERROR(gpu_for_local_rank(0, 4, 2), "mpirun --npernode 2");
  EXPECT_VQ_ERROR(gpu_for_local_rank(0, 1, 0), "no GPU on this machine");
}

TEST(Communicator, CollectivesCombineEveryRank) {
  Communicator& comm = world();
  const int r = comm.rank(), N = comm.size();
  const double triangle = N * (N + 1) / 2.0;  // sum over ranks of (r + 1)
  const Tensor f = from_vector<float>({1.0f * (r + 1), 2.0f * (r + 1), -0.5f}, {3});
  comm.all_reduce_sum(f);
  EXPECT_TRUE(allclose(f,
                       from_vector<float>({1.0f * static_cast<float>(triangle),
                                           2.0f * static_cast<float>(triangle), -0.5f * N},
                                          {3}),
                       0, 0));
  const Tensor i = from_vector<int64_t>({int64_t{1} << 40, r}, {2});
  comm.all_reduce_sum(i);
  EXPECT_EQ(i.to_vector<int64_t>(),
            (std::vector<int64_t>{N * (int64_t{1} << 40), N * (N - 1) / 2}));
  const Tensor d = full({2, 2}, 1.0 + r, DType::Float64);
  comm.all_reduce_mean(d);
  EXPECT_TRUE(allclose(d, full({2, 2}, triangle / N, DType::Float64), 0, 1e-15));
  // A non-contiguous view is reduced in place too.
  const Tensor base = full({2, 3}, 1.0);
  comm.all_reduce_sum(base.t());
  EXPECT_TRUE(allclose(base, full({2, 3}, static_cast<double>(N)), 0, 0));

  const Tensor b = full({4}, r == 0 ? 7.0 : -1.0);
  comm.broadcast(b, 0);
  EXPECT_TRUE(allclose(b, full({4}, 7.0), 0, 0));

  const Tensor mine = full({2, 3}, static_cast<double>(r));
  const Tensor all = comm.all_gather(mine);
  ASSERT_EQ(all.shape(), (Shape{2 * N, 3}));
  for (int s = 0; s < N; ++s)
    EXPECT_TRUE(allclose(all.narrow(0, 2 * s, 2), full({2, 3}, static_cast<double>(s)), 0, 0));

  EXPECT_DOUBLE_EQ(comm.sum(r + 0.5), N * (N - 1) / 2.0 + 0.5 * N);
  EXPECT_TRUE(comm.any(r == N - 1));
  EXPECT_FALSE(comm.any(false));
  comm.barrier();
  if (N > 1) {
    EXPECT_VQ_ERROR(comm.all_reduce_sum(zeros({2}, DType::UInt8)),
                    "MPI collectives take float32, float64 or int64 tensors");
  }
}

// Each rank's loss is w_r . sum_s x_s with w_r = r + 1: d(sum_r loss_r)/d x_r = sum_s w_s, which
// the backward's all-reduce gives every rank.
TEST(Communicator, AllReduceWithGradSumsTheGradientsOfEveryRank) {
  Communicator& comm = world();
  const int r = comm.rank(), N = comm.size();
  Tensor x = full({3}, 0.25 * (r + 1), DType::Float64).requires_grad_();
  const Tensor y = all_reduce_sum_with_grad(x);
  EXPECT_TRUE(allclose(y, full({3}, 0.25 * N * (N + 1) / 2.0, DType::Float64), 0, 1e-15));
  sum(mul(y, static_cast<double>(r + 1))).backward();
  EXPECT_TRUE(allclose(x.grad(), full({3}, N * (N + 1) / 2.0, DType::Float64), 0, 1e-15));
}

// After training steps on different shares of the data, every rank holds bit for bit the same
// weights, discriminator, codebook and optimizer moments: they all applied the same averaged
// gradients and the same codebook updates.
TEST(DataParallel, EveryRankEndsWithTheSameBits) {
  Communicator& comm = world();
  train::TrainConfig c = test::tiny_config("", "");
  c.loss.disc_start = 0;
  train::TrainStep step(c, kCPU);
  Generator gen(100 + comm.rank());  // each rank's own images
  for (int64_t s = 0; s < 3; ++s) {
    const Tensor images = clamp(randn({4, 1, 16, 16}, gen), -1.0, 1.0);
    const auto r = step.run(images, s, 1.0, 1e-3);
    ASSERT_FALSE(r.generator_skipped || r.discriminator_skipped) << r.nonfinite;
  }
  std::vector<Tensor> flat;
  for (const auto& [name, t] : step.model().state_dict())
    if (is_floating(t.dtype())) flat.push_back(t.reshape({-1}));
  for (const auto& [name, t] : step.loss().discriminator().state_dict())
    if (is_floating(t.dtype())) flat.push_back(t.reshape({-1}));
  for (const auto& [name, t] : step.generator_optimizer().state_dict())
    if (is_floating(t.dtype())) flat.push_back(t.reshape({-1}));
  const Tensor mine = concat(flat, 0).unsqueeze(0);
  const Tensor all = comm.all_gather(mine);
  for (int s = 1; s < comm.size(); ++s) {
    EXPECT_TRUE(allclose(all.narrow(0, s, 1), all.narrow(0, 0, 1), 0, 0)) << "rank " << s;
  }
}

}  // namespace
}  // namespace vq::dist

int main(int argc, char** argv) {
  vq::dist::WorldScope world(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  // Only rank 0 reports; every rank's failures still fail the job (its exit code).
  if (!vq::dist::world().is_root()) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}
