// Shared helpers for the Google Benchmark programs: the thread count (VQ_BENCH_THREADS, default
// all cores), throughput counters, and the machine's measured sgemm rate that op throughputs are
// compared with ("of_sgemm": the op's GFLOP/s as a fraction of it).
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>

#include "autograd/ops.h"

namespace vq::bench {

inline int bench_threads() {
  const char* env = std::getenv("VQ_BENCH_THREADS");
  return env ? std::atoi(env) : get_num_threads();
}

// GFLOP/s of a 2048^3 sgemm on this machine, measured once per process (best of 3).
inline double machine_sgemm_gflops() {
  static const double rate = [] {
    Generator gen(9);
    const Tensor a = randn({2048, 2048}, gen), b = randn({2048, 2048}, gen);
    matmul(a, b);  // warm-up
    double best = 1e30;
    for (int i = 0; i < 3; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      matmul(a, b);
      best = std::min(best,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return 2.0 * 2048 * 2048 * 2048 / best * 1e-9;
  }();
  return rate;
}

// GFLOP/s for `flops` per iteration; with `of_sgemm`, also that rate as a fraction of the
// machine's sgemm rate (a rate counter of flops / sgemm rate is exactly that fraction).
inline void set_flops(benchmark::State& state, double flops, bool of_sgemm = true) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (of_sgemm) {
    state.counters["of_sgemm"] = benchmark::Counter(flops * 1e-9 / machine_sgemm_gflops(),
                                                    benchmark::Counter::kIsIterationInvariantRate);
  }
}

}  // namespace vq::bench
