// Shared helpers for the Google Benchmark programs: thread count from VQ_BENCH_THREADS (default:
// all cores) and FLOP counters.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdlib>

#include "autograd/ops.h"

namespace vq::bench {

inline int bench_threads() {
  const char* env = std::getenv("VQ_BENCH_THREADS");
  return env ? std::atoi(env) : get_num_threads();
}

// Reports GFLOP/s for `flops` per iteration.
inline void set_flops(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace vq::bench
