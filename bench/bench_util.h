// Shared helpers for the Google Benchmark programs: the thread count (VQ_BENCH_THREADS, default
// all cores), the device (VQ_BENCH_DEVICE: cpu, the default, or cuda), throughput counters, and
// the device's measured sgemm rate that op throughputs are compared with ("of_sgemm": the op's
// GFLOP/s as a fraction of it). GPU work is asynchronous: each timed iteration ends with
// wait_for(), which waits for the device's queued kernels (Backend::synchronize), so the time is
// the work's, not the enqueueing's.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>

#include "autograd/backend.h"
#include "autograd/ops.h"

namespace vq::bench {

inline int bench_threads() {
  const char* env = std::getenv("VQ_BENCH_THREADS");
  return env ? std::atoi(env) : get_num_threads();
}

inline Device bench_device() {
  const char* env = std::getenv("VQ_BENCH_DEVICE");
  return parse_device(env ? env : "cpu");
}

// Waits until `t` is computed (a no-op wait on the CPU, whose ops are synchronous).
inline void wait_for(const Tensor& t) { backend_for(t).synchronize(); }

// GFLOP/s of a 2048^3 sgemm on the benchmark device, measured once per process (best of 3).
inline double machine_sgemm_gflops() {
  static const double rate = [] {
    Generator gen(9);
    const Tensor a = randn({2048, 2048}, gen).to(bench_device()),
                 b = randn({2048, 2048}, gen).to(bench_device());
    wait_for(matmul(a, b));  // warm-up
    double best = 1e30;
    for (int i = 0; i < 3; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      wait_for(matmul(a, b));
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
