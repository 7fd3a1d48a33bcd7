// The op table's wide cases (op_table_inputs.h): what small [3, 4] cases cannot show about a
// device kernel. Rows longer than a thread block's share and reductions over every dimension of
// a 630k-element tensor, ties and NaN in selections, both operands broadcast, transposed views,
// integer, uint8 and float16 data, zero-size matrix products, every convolution geometry the
// models use, running statistics. Cases whose inputs are too large for finite differences say so
// (finite_differences = false); their ops keep a small gradchecked case in op_table.cpp.
#include <cmath>
#include <string>

#include "autograd/node.h"
#include "tests/op_table.h"
#include "tests/op_table_inputs.h"

namespace vq::test {

namespace {

using Unary = Tensor (*)(const Tensor&);
using Binary = Tensor (*)(const Tensor&, const Tensor&);

// A copy of a case's constant on the device and in the dtype of `like` (a copy even where they
// match: ops that update it in place must not change the case).
Tensor on_device_of(const Tensor& constant, const Tensor& like) {
  return constant.to(like.dtype()).to(like.device()).clone();
}

void add_elementwise(std::vector<OpCase>& c) {
  // float32: the GPU's libm (expf, tanhf, log1pf...) is within 2 ulp of glibc, and FMA
  // contraction changes the last bit of polynomials: 2e-6 over values up to ~10.
  const std::vector<std::pair<const char*, Unary>> any_sign = {
      {"neg", neg},   {"abs", abs},    {"exp", exp},   {"sigmoid", sigmoid},
      {"tanh", tanh}, {"relu", relu},  {"silu", silu}, {"softplus", softplus},
      {"sign", sign}, {"round", round}};
  const std::vector<std::pair<const char*, Unary>> positive_only = {
      {"sqrt", sqrt}, {"rsqrt", rsqrt}, {"log", log}};
  uint64_t seed = 100;
  for (const auto& [name, fn] : any_sign) {
    const std::string op = name;
    c.push_back({.op = op,
                 .label = "[37,29] x 3, a transposed view",
                 .inputs = {mul(off_zero({29, 37}, ++seed), 3.0)},
                 .fn = [fn](const auto& in) { return fn(in[0].t()); },
                 .differentiable = op != "sign" && op != "round",
                 .atol32 = 2e-6,
                 .rtol32 = 2e-6,
                 // exp of values up to ~11: the objective's rounding swamps central differences
                 .finite_differences = op != "exp"});
  }
  for (const auto& [name, fn] : positive_only) {
    c.push_back({.op = name,
                 .label = "[37,29] positive, a transposed view",
                 .inputs = {mul(positive({29, 37}, ++seed), 3.0)},
                 .fn = [fn](const auto& in) { return fn(in[0].t()); },
                 .atol32 = 2e-6,
                 .rtol32 = 2e-6});
  }
  // Both operands broadcast ([4,1,6] with [5,1] -> [4,5,6]): + - * / max min are correctly
  // rounded on both devices, so the float32 results are equal.
  const std::vector<std::pair<const char*, Binary>> binary = {
      {"add", add}, {"sub", sub},         {"mul", mul},
      {"div", div}, {"maximum", maximum}, {"minimum", minimum}};
  for (const auto& [name, fn] : binary) {
    c.push_back({.op = name,
                 .label = "[4,1,6] with [5,1], both broadcast",
                 .inputs = {normal({4, 1, 6}, 120), positive({5, 1}, 121)},
                 .fn = [fn](const auto& in) { return fn(in[0], in[1]); },
                 .atol32 = 0,
                 .rtol32 = 0});
  }
  c.push_back({.op = "mul",
               .label = "a transposed view with a contiguous operand",
               .inputs = {normal({6, 4}, 122), normal({4, 6}, 123)},
               .fn = [](const auto& in) { return mul(in[0].t(), in[1]); },
               .atol32 = 0,
               .rtol32 = 0});
  c.push_back({.op = "pow",
               .label = "positive [5,1] ^ [4,1,6]",
               .inputs = {normal({4, 1, 6}, 124), positive({5, 1}, 125)},
               .fn = [](const auto& in) { return pow(in[1], in[0]); },
               .atol32 = 2e-6,
               .rtol32 = 2e-6,
               .atol64 = 1e-13,
               .rtol64 = 1e-12});
  // Dense float32 operands go four per thread on CUDA (float4 loads), with a tail of n % 4
  // elements: 1043 = 4 * 260 + 3. The gradient case runs the unary backward kernel in float32.
  c.push_back({.op = "add",
               .label = "dense [7,149] + [7,149], four per thread and a tail",
               .inputs = {normal({7, 149}, 126), normal({7, 149}, 127)},
               .fn = [](const auto& in) { return add(in[0], in[1]); },
               .atol32 = 0,
               .rtol32 = 0});
  c.push_back({.op = "silu",
               .label = "dense [1043], four per thread and a tail",
               .inputs = {mul(normal({1043}, 128), 3.0)},
               .fn = [](const auto& in) { return silu(in[0]); },
               .atol32 = 2e-6,
               .rtol32 = 2e-6});
  c.push_back({.op = "silu",
               .label = "its gradient in the input's dtype, dense [1043]",
               .inputs = {mul(normal({1043}, 129), 3.0), normal({1043}, 130)},
               .fn =
                   [](const auto& in) {
                     const Tensor x = in[0].detach().requires_grad_(true);
                     return grad(sum(mul(silu(x), in[1])), {x}, false)[0];
                   },
               .differentiable = false,
               .atol32 = 2e-6,
               .rtol32 = 2e-6});
  // Integer arithmetic is exact.
  const Tensor i = arange(-20, 20, DType::Int64).reshape({8, 5});
  const Tensor j = arange(1, 6, DType::Int64);
  for (const auto& [name, fn] : binary) {
    if (std::string(name) == "div") continue;  // integer division is not an op of ours
    c.push_back({.op = name,
                 .label = "int64 [8,5] with [5]",
                 .inputs = {i, j},
                 .fn = [fn](const auto& in) { return fn(in[0], in[1]); },
                 .differentiable = false,
                 .atol32 = 0,
                 .rtol32 = 0});
  }
}

void add_reductions(std::vector<OpCase>& c) {
  // Sums over every dimension of long rows and of a 630k-element tensor: both devices add in
  // double, so float32 results agree to the rounding of the total.
  // One input per shape serves all its cases (building the table stays cheap: every test
  // program that lists the cases builds them).
  uint64_t seed = 130;
  for (const Shape& shape : std::vector<Shape>{{3, 10000}, {3, 3000, 70}, {2, 5, 3, 4}, {1}}) {
    const bool small = shape_numel(shape) < 1000;
    const Tensor x = normal(shape, ++seed);
    for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
      const std::string where = fmt::format("dim {} of {}", d, shape_str(shape));
      c.push_back({.op = "sum",
                   .label = where,
                   .inputs = {x},
                   .fn = [d](const auto& in) { return sum(in[0], {d}); },
                   .atol32 = 1e-5,
                   .rtol32 = 1e-6,
                   .finite_differences = small});
      // Selections are exact; random normals have no ties.
      for (const bool is_min : {false, true}) {
        c.push_back(
            {.op = is_min ? "min" : "max",
             .label = where + ", values",
             .inputs = {x},
             .fn = [d, is_min](
                       const auto& in) { return (is_min ? min(in[0], d) : max(in[0], d)).values; },
             .atol32 = 0,
             .rtol32 = 0,
             .finite_differences = small});
        c.push_back(
            {.op = is_min ? "argmin" : "argmax",
             .label = where,
             .inputs = {x},
             .fn = [d, is_min](
                       const auto& in) { return is_min ? argmin(in[0], d) : argmax(in[0], d); },
             .differentiable = false,
             .atol32 = 0,
             .rtol32 = 0});
      }
    }
    c.push_back({.op = "max",
                 .label = "all of " + shape_str(shape),
                 .inputs = {x},
                 .fn = [](const auto& in) { return max(in[0]); },
                 .atol32 = 0,
                 .rtol32 = 0,
                 .finite_differences = small});
    if (shape_numel(shape) > 1) {
      c.push_back({.op = "var",
                   .label = "all of " + shape_str(shape),
                   .inputs = {x},
                   .fn = [](const auto& in) { return var(in[0]); },
                   .atol64 = 1e-12,
                   .rtol64 = 1e-10,
                   .finite_differences = small});
    }
  }
  // Ties pick the first index; NaN wins (the first NaN).
  const Tensor ties = from_vector<double>({1, 3, 3, 0, NAN, 2, NAN, 5, 5, 1, 5, -1}, {3, 4});
  for (int64_t d : {0, 1}) {
    const std::string label = fmt::format("ties and NaN, dim {}", d);
    c.push_back({.op = "argmax",
                 .label = label,
                 .inputs = {ties},
                 .fn = [d](const auto& in) { return argmax(in[0], d); },
                 .differentiable = false,
                 .atol32 = 0,
                 .rtol32 = 0});
    c.push_back({.op = "argmin",
                 .label = label,
                 .inputs = {ties},
                 .fn = [d](const auto& in) { return argmin(in[0], d); },
                 .differentiable = false,
                 .atol32 = 0,
                 .rtol32 = 0});
    c.push_back({.op = "max",
                 .label = label + ", values",
                 .inputs = {ties},
                 .fn = [d](const auto& in) { return max(in[0], d).values; },
                 .differentiable = false,
                 .atol32 = 0,
                 .rtol32 = 0});
  }
  // Integer sums are exact.
  const Tensor ints = arange(0, 600, DType::Int64).reshape({6, 10, 10});
  for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{{1}, {0, 2}}) {
    c.push_back({.op = "sum",
                 .label = fmt::format("int64 [6,10,10] over {}", fmt::join(dims, ",")),
                 .inputs = {ints},
                 .fn = [dims](const auto& in) { return sum(in[0], dims); },
                 .differentiable = false,
                 .atol32 = 0,
                 .rtol32 = 0});
  }
  // Softmax along each dimension of [4, 300, 3] (rows of 4, 300 and 3): float32 exp differs by
  // an ulp between libms, sums in double on both.
  for (int64_t d : {0, 1, 2}) {
    c.push_back({.op = "softmax",
                 .label = fmt::format("dim {} of [4,300,3]", d),
                 .inputs = {mul(normal({4, 300, 3}, 150 + d), 4.0)},
                 .fn = [d](const auto& in) { return softmax(in[0], d); },
                 .atol32 = 1e-6,
                 .rtol32 = 1e-5,
                 .finite_differences = false});
    c.push_back({.op = "log_softmax",
                 .label = fmt::format("dim {} of [4,300,3]", d),
                 .inputs = {mul(normal({4, 300, 3}, 153 + d), 4.0)},
                 .fn = [d](const auto& in) { return log_softmax(in[0], d); },
                 .finite_differences = false});
  }
  c.push_back({.op = "mean",
               .label = "dims {0,2} of [4,300,3]",
               .inputs = {normal({4, 300, 3}, 156)},
               .fn =
                   [](const auto& in) {
                     return mean(in[0], {0, 2});
                   },
               .finite_differences = false});
  // Partial sums per block and one fixed-order final pass: sizes below, at and beyond one block's
  // share and the 512-block cap, and an empty tensor; sums in double on both sides (only the
  // order differs).
  c.push_back(
      {.op = "squared_norm",
       .label = "sizes around a block's share and the block cap, and empty",
       .inputs = {normal({1}, 157), normal({4095}, 158), normal({4097}, 159), normal({33, 65}, 160),
                  normal({3000001}, 161), zeros({0}, DType::Float64)},
       .fn = [](const auto& in) { return squared_norm(in); },
       .differentiable = false,
       .atol32 = 0,
       .rtol32 = 1e-12});
}

void add_linalg(std::vector<OpCase>& c) {
  // float32 without TF32: only the summation order differs, error ~ K * eps * |a||b|.
  c.push_back({.op = "matmul",
               .label = "[2,3,33,65] @ [65,17]",
               .inputs = {normal({2, 3, 33, 65}, 170), normal({65, 17}, 171)},
               .fn = [](const auto& in) { return matmul(in[0], in[1]); },
               .atol32 = 1e-4,
               .rtol32 = 1e-4,
               .finite_differences = false});
  c.push_back({.op = "linear",
               .label = "[2,3,33,65] with a [17,65] weight and bias",
               .inputs = {normal({2, 3, 33, 65}, 172), normal({17, 65}, 173), normal({17}, 174)},
               .fn = [](const auto& in) { return linear(in[0], in[1], in[2]); },
               .atol32 = 1e-4,
               .rtol32 = 1e-4,
               .finite_differences = false});
  c.push_back({.op = "bmm",
               .label = "transposed operand, batch broadcast by expand",
               .inputs = {normal({3, 65, 33}, 175), normal({1, 65, 9}, 176)},
               .fn =
                   [](const auto& in) {
                     return bmm(in[0].transpose(1, 2), in[1].expand({3, 65, 9}));
                   },
               .atol32 = 1e-4,
               .rtol32 = 1e-4,
               .finite_differences = false});
  // Zero sizes (each of M, K, N, batched too): empty results, or zeros when K = 0.
  c.push_back({.op = "matmul",
               .label = "K = 0",
               .inputs = {normal({4, 0}, 177), normal({0, 3}, 178)},
               .fn = [](const auto& in) { return matmul(in[0], in[1]); },
               .atol32 = 0,
               .rtol32 = 0});
  c.push_back({.op = "matmul",
               .label = "M = 0, batched",
               .inputs = {normal({2, 0, 5}, 179), normal({5, 3}, 180)},
               .fn = [](const auto& in) { return matmul(in[0], in[1]); },
               .atol32 = 0,
               .rtol32 = 0});
  c.push_back({.op = "bmm",
               .label = "N = 0",
               .inputs = {normal({2, 4, 5}, 181), normal({2, 5, 0}, 182)},
               .fn = [](const auto& in) { return bmm(in[0], in[1]); },
               .atol32 = 0,
               .rtol32 = 0});
  c.push_back({.op = "linear",
               .label = "K = 0 with bias",
               .inputs = {normal({3, 0}, 183), normal({2, 0}, 184), normal({2}, 185)},
               .fn = [](const auto& in) { return linear(in[0], in[1], in[2]); },
               .atol32 = 0,
               .rtol32 = 0});
}

void add_convolution_and_resampling(std::vector<OpCase>& c) {
  struct Geometry {
    const char* label;
    Shape x, w;
    Conv2dOptions o;
  };
  const std::vector<Geometry> geometries = {
      {"PatchGAN 4x4 stride 2 pad 1", {2, 4, 9, 9}, {6, 4, 4, 4}, {{2, 2}, {1, 1}, {1, 1}}},
      {"3x3 stride 2 leaving a remainder", {1, 3, 10, 7}, {2, 3, 3, 3}, {{2, 2}, {0, 0}, {1, 1}}},
      {"1x1 (quant_conv)", {2, 5, 6, 6}, {3, 5, 1, 1}, {{1, 1}, {0, 0}, {1, 1}}},
      {"dilation 2x1, strides 1x2, pad 2x1",
       {1, 2, 11, 11},
       {3, 2, 3, 3},
       {{1, 2}, {2, 1}, {2, 1}}},
      // The FID Inception network's factorised kernels.
      {"1x7 pad 0x3", {2, 3, 5, 9}, {4, 3, 1, 7}, {{1, 1}, {0, 3}, {1, 1}}},
      {"3x1 pad 1x0, stride 2x1", {1, 4, 7, 5}, {3, 4, 3, 1}, {{2, 1}, {1, 0}, {1, 1}}},
  };
  uint64_t seed = 190;
  for (const Geometry& g : geometries) {
    const Conv2dOptions o = g.o;
    // cuDNN may pick Winograd/FFT-like algorithms that transform the sums: ~1e-4 relative.
    for (const bool bias : {true, false}) {
      std::vector<Tensor> inputs = {normal(g.x, ++seed), normal(g.w, ++seed)};
      if (bias) inputs.push_back(normal({g.w[0]}, ++seed));
      c.push_back(
          {.op = "conv2d",
           .label = std::string(g.label) + (bias ? ", bias" : ""),
           .inputs = inputs,
           .fn = [o, bias](
                     const auto& in) { return conv2d(in[0], in[1], bias ? in[2] : Tensor(), o); },
           .atol32 = 5e-4,
           .rtol32 = 5e-4});
    }
  }
  // The residual (a ResBlock's shortcut) added where the result is written.
  c.push_back({.op = "conv2d",
               .label = "3x3 same, bias and a residual",
               .inputs = {normal({2, 3, 6, 5}, 196), normal({4, 3, 3, 3}, 197), normal({4}, 198),
                          normal({2, 4, 6, 5}, 199)},
               .fn =
                   [](const auto& in) {
                     return conv2d(in[0], in[1], in[2], {{1, 1}, {1, 1}, {1, 1}}, in[3]);
                   },
               .atol32 = 5e-4,
               .rtol32 = 5e-4});
  // Gathers in the CPU's order: float64 results are (nearly always exactly) equal.
  c.push_back({.op = "upsample_nearest2d",
               .label = "x3",
               .inputs = {normal({2, 3, 8, 6}, 200)},
               .fn = [](const auto& in) { return upsample_nearest2d(in[0], 3); }});
  c.push_back({.op = "avg_pool2d",
               .label = "2x2 stride 2",
               .inputs = {normal({2, 3, 8, 6}, 201)},
               .fn = [](const auto& in) { return avg_pool2d(in[0], 2, 2); }});
  // The FID Inception network's pools: padding left out of the average's divisor; a padded
  // max-pool (3x3 stride 1 pad 1) whose borders never win.
  c.push_back({.op = "avg_pool2d",
               .label = "3x3 stride 1 pad 1, padding not counted",
               .inputs = {normal({2, 3, 7, 6}, 205)},
               .fn = [](const auto& in) { return avg_pool2d(in[0], 3, 1, 1, false); }});
  c.push_back({.op = "avg_pool2d",
               .label = "3x3 stride 2 pad 1, padding not counted",
               .inputs = {normal({1, 2, 8, 7}, 206)},
               .fn = [](const auto& in) { return avg_pool2d(in[0], 3, 2, 1, false); }});
  // The FID network's input: a grey 28x28 image up to 299x299, and a photo's size down.
  c.push_back({.op = "resize_bilinear",
               .label = "28x28 up to 299x299",
               .inputs = {normal({1, 3, 28, 28}, 262)},
               .fn = [](const auto& in) { return resize_bilinear(in[0], 299, 299); },
               .finite_differences = false});
  c.push_back({.op = "resize_bilinear",
               .label = "45x38 down to 13x11",
               .inputs = {normal({2, 3, 45, 38}, 263)},
               .fn = [](const auto& in) { return resize_bilinear(in[0], 13, 11); }});
  c.push_back({.op = "max_pool2d",
               .label = "3x3 stride 1 pad 1, no ties",
               .inputs = {distinct({2, 3, 7, 6}, 207)},
               .fn = [](const auto& in) { return max_pool2d(in[0], 3, 1, 1); }});
  c.push_back({.op = "max_pool2d",
               .label = "3x3 stride 2 pad 1, negative values (the border must not win)",
               .inputs = {sub(distinct({1, 2, 8, 7}, 208), 100.0)},
               .fn = [](const auto& in) { return max_pool2d(in[0], 3, 2, 1); }});
  c.push_back({.op = "max_pool2d",
               .label = "2x2 stride 2, no ties",
               .inputs = {distinct({2, 3, 8, 6}, 202)},
               .fn = [](const auto& in) { return max_pool2d(in[0], 2, 2); }});
  c.push_back({.op = "pad",
               .label = "left/right/top, value 0.5",
               .inputs = {normal({2, 3, 8, 6}, 203)},
               .fn = [](const auto& in) {
                 return pad(in[0], {1, 2, 0, 1}, 0.5);
               }});
  c.push_back({.op = "reflection_pad",
               .label = "2, 1, 1, 3",
               .inputs = {normal({2, 3, 8, 6}, 204)},
               .fn = [](const auto& in) {
                 return reflection_pad(in[0], {2, 1, 1, 3});
               }});
}

void add_normalisation(std::vector<OpCase>& c) {
  // Statistics in double on both devices (the CPU sums float rows in float first).
  const Tensor x = add(mul(normal({2, 8, 5, 3}, 210), 2.0), 1.0);
  for (int64_t groups : {1, 2, 8}) {
    c.push_back({.op = "group_norm",
                 .label = fmt::format("{} groups of 8 channels, mean 1", groups),
                 .inputs = {x, normal({8}, 211), normal({8}, 212)},
                 .fn = [groups](const auto& in) { return group_norm(in[0], groups, in[1], in[2]); },
                 .atol64 = 1e-9,
                 .rtol64 = 1e-8});
  }
  c.push_back({.op = "group_norm",
               .label = "4 groups, no affine",
               .inputs = {x},
               .fn = [](const auto& in) { return group_norm(in[0], 4, Tensor(), Tensor()); },
               .atol64 = 1e-9,
               .rtol64 = 1e-8});
  // Running statistics made in the case (on the inputs' device): evaluation normalises with
  // them; training updates them in place, which the second case returns for comparison.
  const Tensor running_mean = normal({8}, 213), running_var = positive({8}, 214);
  c.push_back({.op = "batch_norm",
               .label = "evaluation, running statistics",
               .inputs = {x, normal({8}, 215), normal({8}, 216)},
               .fn =
                   [=](const auto& in) {
                     return batch_norm(in[0], on_device_of(running_mean, in[0]),
                                       on_device_of(running_var, in[0]), in[1], in[2], false);
                   },
               .atol64 = 1e-9,
               .rtol64 = 1e-8});
  c.push_back({.op = "batch_norm",
               .label = "training, the running statistics it updates",
               .inputs = {x},
               .fn =
                   [=](const auto& in) {
                     Tensor rm = on_device_of(running_mean, in[0]);
                     Tensor rv = on_device_of(running_var, in[0]);
                     batch_norm(in[0], rm, rv, Tensor(), Tensor(), true);
                     return concat({rm, rv}, 0);
                   },
               .differentiable = false});
}

void add_indexing(std::vector<OpCase>& c) {
  // float64 atomics add duplicates in any order: last-bit differences only.
  const Tensor idx = indices({3, 0, 3, 6, 1, 3}, {6});
  c.push_back({.op = "index_select",
               .label = "dim 1 of [6,7,5], repeated indices",
               .inputs = {normal({6, 7, 5}, 220), idx},
               .fn = [](const auto& in) { return index_select(in[0], 1, in[1]); },
               .atol64 = 1e-12,
               .rtol64 = 1e-12});
  c.push_back({.op = "index_add",
               .label = "dim 1 of [6,7,5], repeated targets",
               .inputs = {normal({6, 7, 5}, 221), idx, normal({6, 6, 5}, 222)},
               .fn = [](const auto& in) { return index_add(in[0], 1, in[1], in[2]); },
               .atol64 = 1e-12,
               .rtol64 = 1e-12});
  const Tensor gidx = indices({0, 2, 2, 1, 0, 0, 1, 2, 2, 2, 1, 0}, {2, 2, 3});
  c.push_back({.op = "gather",
               .label = "dim 1 of [2,3,3]",
               .inputs = {normal({2, 3, 3}, 223), gidx},
               .fn = [](const auto& in) { return gather(in[0], 1, in[1]); },
               .atol64 = 1e-12,
               .rtol64 = 1e-12});
  c.push_back({.op = "scatter_add",
               .label = "dim 1 of [2,3,3], repeated targets",
               .inputs = {normal({2, 3, 3}, 224), gidx, normal({2, 2, 3}, 225)},
               .fn = [](const auto& in) { return scatter_add(in[0], 1, in[1], in[2]); },
               .atol64 = 1e-12,
               .rtol64 = 1e-12});
  c.push_back({.op = "embedding",
               .label = "[2,2] indices into [10,4]",
               .inputs = {normal({10, 4}, 226), indices({9, 1, 1, 0}, {2, 2})},
               .fn = [](const auto& in) { return embedding(in[0], in[1]); },
               .atol64 = 1e-12,
               .rtol64 = 1e-12});
  // Integer and uint8 accumulations are exact (uint8 goes through a 32-bit compare-and-swap).
  Generator gen(9);
  const Tensor classes = randint(0, 13, {5000}, gen);
  c.push_back({.op = "bincount",
               .label = "5000 values in 13 classes",
               .inputs = {classes},
               .fn = [](const auto& in) { return bincount(in[0], 13); },
               .differentiable = false,
               .atol32 = 0,
               .rtol32 = 0});
  c.push_back({.op = "one_hot",
               .label = "uint8, 13 classes",
               .inputs = {classes.narrow(0, 0, 50)},
               .fn = [](const auto& in) { return one_hot(in[0], 13, DType::UInt8); },
               .differentiable = false,
               .atol32 = 0,
               .rtol32 = 0});
  c.push_back({.op = "index_add",
               .label = "uint8 with repeated targets",
               .inputs = {indices({1, 1, 3, 1, 0, 3}, {6})},
               .fn =
                   [](const auto& in) {
                     return index_add(zeros({4, 3}, DType::UInt8, in[0].device()), 0, in[0],
                                      ones({6, 3}, DType::UInt8, in[0].device()));
                   },
               .differentiable = false,
               .atol32 = 0,
               .rtol32 = 0});
  c.push_back({.op = "index_select",
               .label = "float16 rows",
               .inputs = {arange(0, 12, DType::Int64).reshape({4, 3}).to(DType::Float16),
                          indices({3, 0}, {2})},
               .fn = [](const auto& in) { return index_select(in[0], 0, in[1]); },
               .differentiable = false,
               .atol32 = 0,
               .rtol32 = 0});
}

}  // namespace

void add_wide_cases(std::vector<OpCase>& cases) {
  add_elementwise(cases);
  add_reductions(cases);
  add_linalg(cases);
  add_convolution_and_resampling(cases);
  add_normalisation(cases);
  add_indexing(cases);
}

}  // namespace vq::test
