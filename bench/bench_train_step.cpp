// One full VQGAN training step of the fmnist config at batch 64, exactly as the trainer runs it
// (trainers/train_step.h): generator forward, loss with the adaptive adversarial weight,
// backward, Adam; then the discriminator step. Reports images/s. The improved preset's
// quantizer settings; the perceptual term off (the default run's setting) or on with random
// VGG16 features (arg 1); in float32, and with bf16 autocast (BM_TrainStepAmp). Runs on
// VQ_BENCH_DEVICE (cpu or cuda); the seed256 b8 step (float32 and --use_amp) on CUDA, and on
// the CPU at 64x64 batch 1 for its counters (same modules and op sequence, a CPU-sized step).
// VQ_BENCH_MIN_TIME (seconds) replaces every case's minimum time (a profile wants one step, a
// GPU-busy measurement many); VQ_BENCH_DETERMINISTIC=1 times the steps as --deterministic runs.
#include "autograd/backend.h"
#include "autograd/node.h"
#include "autograd/switches.h"
#include "bench/bench_util.h"
#include "trainers/config.h"
#include "trainers/train_step.h"

namespace vq {
namespace {

// A step of `model_config` at batch `batch` on VQ_BENCH_DEVICE, waited for (synchronize) every
// iteration. Counters: images/s, and per step the host reads of tensor values (each a wait for a
// GPU) and the backend calls (kernels and allocations), counted on every device.
void run_train_step(benchmark::State& state, const std::string& model_config, int64_t batch,
                    bool perceptual, DType precision = DType::Float32, int64_t resolution = 0) {
  set_num_threads(bench::bench_threads());
  // The cost of --deterministic on a GPU (fixed-order sums, deterministic cuDNN algorithms).
  set_deterministic(env_switch("VQ_BENCH_DETERMINISTIC", false));
  train::TrainConfig config = train::preset_config("improved", model_config);
  if (resolution > 0) config.model.resolution = resolution;
  config.loss.disc_start = 0;  // time the full step, discriminator included
  if (perceptual) config.loss.perceptual_weights = "random";
  const Device device = bench::bench_device();
  train::TrainStep step(config, device, precision);
  Generator gen(6);
  const int64_t C = config.model.in_channels, S = config.model.resolution;
  const Tensor x = clamp(randn({batch, C, S, S}, gen), -1.0, 1.0).to(device);
  step.run(x, 0, 1.0, 1e-4);  // warm-up: oneDNN and cuDNN plan every shape once
  Backend& backend = backend_for(device);
  backend.synchronize();
  const DispatchCounts before = dispatch_counts();
  int64_t i = 1;
  for (auto _ : state) {
    step.run(x, i++, 1.0, 1e-4);
    backend.synchronize();
  }
  const DispatchCounts after = dispatch_counts();
  const double steps = static_cast<double>(std::max<int64_t>(i - 1, 1));
  state.counters["host_reads/step"] =
      static_cast<double>(after.host_reads - before.host_reads) / steps;
  state.counters["backend_calls/step"] =
      static_cast<double>(after.backend_calls - before.backend_calls) / steps;
  state.counters["images/s"] =
      benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_TrainStep(benchmark::State& state) {
  run_train_step(state, "fmnist", 64, state.range(0) == 1);
}
double min_time(double seconds) {
  const char* env = std::getenv("VQ_BENCH_MIN_TIME");
  return env ? std::atof(env) : seconds;
}

// The fmnist step's settings: perceptual term off (0) and on (1), 5 s per case.
void fmnist_step_cases(benchmark::internal::Benchmark* b) {
  b->ArgName("perceptual")
      ->Arg(0)
      ->Arg(1)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->MinTime(min_time(5.0));
}
BENCHMARK(BM_TrainStep)->Apply(fmnist_step_cases);

// Skips (with the reason) where the device has no bfloat16 arithmetic.
bool skipped_without_bf16(benchmark::State& state) {
  const std::string why_not =
      backend_for(bench::bench_device()).why_no_low_precision(DType::BFloat16);
  if (!why_not.empty()) state.SkipWithError(why_not.c_str());
  return !why_not.empty();
}

// The same step with --use_amp's bf16 autocast (where the CPU has AVX512_BF16).
void BM_TrainStepAmp(benchmark::State& state) {
  if (skipped_without_bf16(state)) return;
  run_train_step(state, "fmnist", 64, state.range(0) == 1, DType::BFloat16);
}
BENCHMARK(BM_TrainStepAmp)->Apply(fmnist_step_cases);

// The seed's 256x256 RGB model at batch 8: a GPU-sized step. On the CPU (where it would take
// minutes) the same model runs at 64x64, batch 1, for its host-read and backend-call counters;
// its images/s there is not comparable.
void seed256_step(benchmark::State& state, DType precision) {
  if (bench::bench_device().is_cpu()) {
    state.SetLabel("CPU: 64x64 batch 1, for the counters");
    run_train_step(state, "seed256", 1, false, precision, 64);
  } else {
    run_train_step(state, "seed256", 8, false, precision);
  }
}
void BM_TrainStepSeed256(benchmark::State& state) { seed256_step(state, DType::Float32); }
BENCHMARK(BM_TrainStepSeed256)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(min_time(2.0));
void BM_TrainStepSeed256Amp(benchmark::State& state) {
  if (skipped_without_bf16(state)) return;
  seed256_step(state, DType::BFloat16);
}
BENCHMARK(BM_TrainStepSeed256Amp)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(min_time(2.0));

}  // namespace
}  // namespace vq

BENCHMARK_MAIN();
