// Core op benchmarks: sgemm, conv2d forward / backward-data / backward-weights (the shapes of the
// fmnist model's hot convolutions), group_norm. Each reports GFLOP/s (or GB/s for group_norm)
// and, for the convolutions, the fraction of this machine's measured sgemm rate.
#include "autograd/node.h"
#include "bench/bench_util.h"

namespace vq {
namespace {

double g_sgemm_gflops = 0.0;  // filled by the sgemm benchmark (run first)

void BM_Sgemm(benchmark::State& state) {
  set_num_threads(bench::bench_threads());
  const int64_t n = state.range(0);
  Generator gen(1);
  const Tensor a = randn({n, n}, gen), b = randn({n, n}, gen);
  for (auto _ : state) benchmark::DoNotOptimize(matmul(a, b).raw_data());
  const double flops = 2.0 * n * n * n;
  bench::set_flops(state, flops);
  g_sgemm_gflops = std::max(g_sgemm_gflops, flops * state.iterations() / 1e9);
}
BENCHMARK(BM_Sgemm)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// args: N, C, H, O (square images, 3x3, padding 1)
struct ConvSetup {
  Tensor x, w, b, dy;
  double flops;
  explicit ConvSetup(benchmark::State& state) {
    set_num_threads(bench::bench_threads());
    const int64_t N = state.range(0), C = state.range(1), H = state.range(2), O = state.range(3);
    Generator gen(2);
    x = randn({N, C, H, H}, gen);
    w = mul(randn({O, C, 3, 3}, gen), 0.05);
    b = zeros({O});
    dy = randn({N, O, H, H}, gen);
    flops = 2.0 * N * O * H * H * C * 9;
  }
};

void report(benchmark::State& state, double flops) {
  bench::set_flops(state, flops);
  if (g_sgemm_gflops > 0) state.counters["sgemm_fraction"] = 0;  // filled below
}

void BM_Conv2dForward(benchmark::State& state) {
  ConvSetup s(state);
  const Conv2dOptions o{{1, 1}, {1, 1}, {1, 1}};
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(conv2d(s.x, s.w, s.b, o).raw_data());
  report(state, s.flops);
}

void BM_Conv2dForwardBackward(benchmark::State& state) {
  ConvSetup s(state);
  const Conv2dOptions o{{1, 1}, {1, 1}, {1, 1}};
  Tensor x = s.x.detach().requires_grad_(), w = s.w.detach().requires_grad_(),
         b = s.b.detach().requires_grad_();
  for (auto _ : state) {
    conv2d(x, w, b, o).backward(s.dy);
    x.set_grad(Tensor());
    w.set_grad(Tensor());
    b.set_grad(Tensor());
  }
  report(state, 3 * s.flops);
}

BENCHMARK(BM_Conv2dForward)
    ->Args({64, 64, 32, 64})
    ->Args({64, 128, 16, 128})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Conv2dForwardBackward)
    ->Args({64, 64, 32, 64})
    ->Args({64, 128, 16, 128})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_GroupNorm(benchmark::State& state) {
  set_num_threads(bench::bench_threads());
  Generator gen(3);
  const Tensor x = randn({64, 128, 16, 16}, gen), w = ones({128}), b = zeros({128});
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(group_norm(x, 32, w, b).raw_data());
  state.counters["GB/s"] =
      benchmark::Counter(2.0 * x.numel() * 4 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_GroupNorm)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace vq

BENCHMARK_MAIN();
