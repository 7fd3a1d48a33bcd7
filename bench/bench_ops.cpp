// Op benchmarks: sgemm, conv2d forward / backward-data / backward-weights and forward+backward
// at the fmnist model's hot shapes, the quantizer step (distances, argmin and EMA update at K = 64
// and 512, D = 256, N = 64 x 8 x 8) and the perceptual net's forward; and BM_Op/<case>, the rows
// of the op table (tests/op_table.h) flagged for benchmarking (elementwise, reductions, softmax,
// group_norm, group_norm_silu at the size of the step's activations). Each reports GFLOP/s (or
// GB/s, images/s) and, for the GEMM-like ops, the fraction of the sgemm rate. sgemm, the
// convolutions and the op-table rows run on VQ_BENCH_DEVICE (cpu or cuda); the others on the CPU.
#include <algorithm>

#include "autograd/autocast.h"
#include "autograd/backend.h"
#include "autograd/node.h"
#include "bench/bench_util.h"
#include "models/perceptual.h"
#include "models/vector_quantizer.h"
#include "tests/op_table.h"

namespace vq {
namespace {

void BM_Sgemm(benchmark::State& state) {
  set_num_threads(bench::bench_threads());
  const int64_t n = state.range(0);
  Generator gen(1);
  const Tensor a = randn({n, n}, gen).to(bench::bench_device()),
               b = randn({n, n}, gen).to(bench::bench_device());
  for (auto _ : state) bench::wait_for(matmul(a, b));
  bench::set_flops(state, 2.0 * n * n * n, false);
}
BENCHMARK(BM_Sgemm)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// args: N, C, H, O (square images, 3x3, padding 1)
struct ConvSetup {
  Tensor x, w, b, dy, dx, dw, db;
  ConvShape shape;
  double flops;
  explicit ConvSetup(benchmark::State& state) {
    set_num_threads(bench::bench_threads());
    const int64_t N = state.range(0), C = state.range(1), H = state.range(2), O = state.range(3);
    Generator gen(2);
    const Device device = bench::bench_device();
    x = randn({N, C, H, H}, gen).to(device);
    w = mul(randn({O, C, 3, 3}, gen), 0.05).to(device);
    b = zeros({O}, DType::Float32, device);
    dy = randn({N, O, H, H}, gen).to(device);
    dx = Tensor::empty(x.shape(), DType::Float32, device);
    dw = Tensor::empty(w.shape(), DType::Float32, device);
    db = Tensor::empty(b.shape(), DType::Float32, device);
    shape = ConvShape{N, C, H, H, O, 3, 3, H, H, Conv2dOptions{{1, 1}, {1, 1}, {1, 1}}};
    flops = 2.0 * N * O * H * H * C * 9;
  }
};

void BM_Conv2dForward(benchmark::State& state) {
  ConvSetup s(state);
  for (auto _ : state) {
    backend_for(s.x).conv2d_forward(s.shape, s.x, s.w, s.b, Tensor(), s.dy);
    bench::wait_for(s.dy);
  }
  bench::set_flops(state, s.flops);
}

void BM_Conv2dBackwardData(benchmark::State& state) {
  ConvSetup s(state);
  for (auto _ : state) {
    backend_for(s.x).conv2d_backward_data(s.shape, s.dy, s.w, s.dx);
    bench::wait_for(s.dx);
  }
  bench::set_flops(state, s.flops);
}

void BM_Conv2dBackwardWeights(benchmark::State& state) {
  ConvSetup s(state);
  for (auto _ : state) {
    backend_for(s.x).conv2d_backward_weight(s.shape, s.dy, s.x, s.dw, s.db);
    bench::wait_for(s.dw);
  }
  bench::set_flops(state, s.flops);
}

// Through autograd, as training runs it: forward, then backward for input, weight and bias; in
// `precision` (Float32, or BFloat16 autocast as --use_amp trains).
void conv_forward_backward(benchmark::State& state, DType precision) {
  ConvSetup s(state);
  const Conv2dOptions o{{1, 1}, {1, 1}, {1, 1}};
  Tensor x = s.x.detach().requires_grad_(), w = s.w.detach().requires_grad_(),
         b = s.b.detach().requires_grad_();
  AutocastScope autocast(precision);
  for (auto _ : state) {
    conv2d(x, w, b, o).backward(s.dy);
    bench::wait_for(x.grad());
    for (Tensor* t : {&x, &w, &b}) t->set_grad(Tensor());
  }
  bench::set_flops(state, 3 * s.flops);
}
void BM_Conv2dForwardBackward(benchmark::State& state) {
  conv_forward_backward(state, DType::Float32);
}
void BM_Conv2dForwardBackwardBf16(benchmark::State& state) {
  conv_forward_backward(state, DType::BFloat16);
}

#define VQ_CONV_SHAPES Args({64, 64, 32, 64})->Args({64, 128, 16, 128})->Args({64, 128, 8, 128})
BENCHMARK(BM_Conv2dForward)->VQ_CONV_SHAPES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Conv2dBackwardData)->VQ_CONV_SHAPES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Conv2dBackwardWeights)->VQ_CONV_SHAPES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Conv2dForwardBackward)->VQ_CONV_SHAPES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Conv2dForwardBackwardBf16)
    ->VQ_CONV_SHAPES->Unit(benchmark::kMillisecond)
    ->UseRealTime();
#undef VQ_CONV_SHAPES

// One flagged op-table row, forward only, waited for every iteration. GB/s counts one read of
// every input and one write of the output (the least traffic the op can have).
void run_op_case(benchmark::State& state, const test::OpCase& c) {
  set_num_threads(bench::bench_threads());
  const Device device = bench::bench_device();
  std::vector<Tensor> inputs;
  double bytes = 0;
  for (const Tensor& t : c.bench_inputs()) {
    inputs.push_back(t.to(device));
    bytes += static_cast<double>(t.numel() * dtype_size(t.dtype()));
  }
  NoGradGuard no_grad;
  const Tensor first = c.fn(inputs);
  bytes += static_cast<double>(first.numel() * dtype_size(first.dtype()));
  Backend& backend = backend_for(device);
  for (auto _ : state) {
    benchmark::DoNotOptimize(c.fn(inputs).raw_data());
    backend.synchronize();
  }
  state.counters["GB/s"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

// BM_Op/<op>/<label>, one per flagged row.
void register_op_table_benchmarks() {
  for (const test::OpCase& c : test::op_cases()) {
    if (!c.bench_inputs) continue;
    std::string name = "BM_Op/" + c.op + (c.label.empty() ? "" : "/" + c.label);
    std::replace(name.begin(), name.end(), ' ', '_');
    benchmark::RegisterBenchmark(name.c_str(),
                                 [&c](benchmark::State& state) { run_op_case(state, c); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
}

namespace {

// The quantizer's training step on a batch of 64 8x8 latents of 256 channels: distances by GEMM,
// argmin, the EMA update (no sampling temperature, no entropy term: the core lookup).
void BM_Quantizer(benchmark::State& state) {
  set_num_threads(bench::bench_threads());
  models::QuantizerConfig c;
  c.n_embed = state.range(0);
  c.temperature = 0.0;
  c.entropy_weight = 0.0;
  c.dead_code_reset = "off";
  c.low_usage_reset_interval = 0;
  Generator init(1);
  models::VectorQuantizer vq(c, 256, 1, init);
  Generator gen(4);
  const Tensor z = randn({64, 256, 8, 8}, gen);
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(vq.forward(z).indices.raw_data());
  const double M = 64.0 * 8 * 8, K = static_cast<double>(c.n_embed);
  bench::set_flops(state, 2.0 * M * K * 256);  // the distance GEMM dominates
}
BENCHMARK(BM_Quantizer)->Arg(64)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();

// The perceptual distance on two batches of 64 28x28 grey images (Fashion-MNIST's size), per
// network: 0 LPIPS VGG16, 1 ST-LPIPS VGG16, 2 ST-LPIPS AlexNet (random weights cost the same).
void BM_PerceptualForward(benchmark::State& state) {
  set_num_threads(bench::bench_threads());
  const auto net = static_cast<models::PerceptualNet>(state.range(0));
  Generator gen(5);
  models::PerceptualLoss lpips(net, gen);
  const Tensor a = randn({64, 1, 28, 28}, gen), b = randn({64, 1, 28, 28}, gen);
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(lpips.forward(a, b).raw_data());
  state.SetLabel(models::perceptual_net_name(net));
  state.counters["images/s"] =
      benchmark::Counter(64, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_PerceptualForward)->DenseRange(0, 2)->Unit(benchmark::kMillisecond)->UseRealTime();

// ST-LPIPS's blur downsample where ST VGG16 first meets it on Fashion-MNIST: [64, 64, 27, 27].
void BM_BlurDownsample(benchmark::State& state) {
  set_num_threads(bench::bench_threads());
  Generator gen(6);
  const Tensor x = randn({64, 64, 27, 27}, gen);
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(models::blur_downsample(x).raw_data());
}
BENCHMARK(BM_BlurDownsample)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace vq

int main(int argc, char** argv) {
  vq::register_op_table_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
