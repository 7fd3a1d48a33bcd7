// One full VQGAN training step of the fmnist config at batch 64, exactly as the trainer runs it
// (trainers/train_step.h): generator forward, loss with the adaptive adversarial weight,
// backward, Adam; then the discriminator step. Reports images/s. The improved preset's
// quantizer settings; the perceptual term off (the default run's setting) or on with random
// VGG16 features (arg 1).
#include "autograd/node.h"
#include "bench/bench_util.h"
#include "trainers/config.h"
#include "trainers/train_step.h"

namespace vq {
namespace {

void BM_TrainStep(benchmark::State& state) {
  set_num_threads(bench::bench_threads());
  train::TrainConfig config = train::preset_config("improved", "fmnist");
  config.loss.disc_start = 0;  // time the full step, discriminator included
  if (state.range(0) == 1) config.loss.perceptual_weights = "random";
  train::TrainStep step(config, kCPU);
  Generator gen(6);
  const Tensor x = clamp(randn({64, 1, 32, 32}, gen), -1.0, 1.0);
  step.run(x, 0, 1.0, 1e-4);  // warm-up: oneDNN plans every shape once
  int64_t i = 1;
  for (auto _ : state) step.run(x, i++, 1.0, 1e-4);
  state.counters["images/s"] =
      benchmark::Counter(64, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_TrainStep)
    ->ArgName("perceptual")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(5.0);

}  // namespace
}  // namespace vq

BENCHMARK_MAIN();
