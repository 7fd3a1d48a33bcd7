// The cases of the op table (op_table.h). Inputs are small float64 tensors with fixed seeds, kept
// away from kinks where an op has one (relu and abs at 0, ties of max/min/maximum, clamp's
// bounds, round's halves), so finite differences see a smooth function. Each float32 tolerance
// says why it is what it is; the default (1e-5) covers one float32 rounding in another order.
#include "tests/op_table.h"

#include <algorithm>
#include <cmath>

#include "tests/op_table_inputs.h"

namespace vq::test {

namespace {

std::vector<OpCase> build_cases() {
  std::vector<OpCase> c;
  auto add_case = [&c](OpCase oc) { c.push_back(std::move(oc)); };
  const Shape m{3, 4};

  // ---- elementwise, broadcasting [3, 4] with [4] and a transposed view ----
  add_case({"add", "[3,4] + [4]", {normal(m, 1), normal({4}, 2)}, [](const auto& in) {
              return add(in[0], in[1]);
            }});
  add_case({"add", "view + scalar", {normal({4, 3}, 1)}, [](const auto& in) {
              return add(in[0].t(), 1.5);
            }});
  add_case({"sub", "[3,4] - [3,1]", {normal(m, 3), normal({3, 1}, 4)}, [](const auto& in) {
              return sub(in[0], in[1]);
            }});
  add_case({"mul", "[3,4] * [4]", {normal(m, 5), normal({4}, 6)}, [](const auto& in) {
              return mul(in[0], in[1]);
            }});
  add_case({"div", "[3,4] / [4]", {normal(m, 7), positive({4}, 8)}, [](const auto& in) {
              return div(in[0], in[1]);
            }});
  add_case({"pow",
            "positive ^ [4]",
            {positive(m, 9), normal({4}, 10)},
            [](const auto& in) { return pow(in[0], in[1]); },
            true,
            1e-5,
            1e-5});
  add_case({"pow", "x ^ 3", {normal(m, 11)}, [](const auto& in) { return pow(in[0], 3.0); }});
  add_case({"maximum", "no ties", {distinct(m, 12), distinct(m, 13)}, [](const auto& in) {
              return maximum(in[0], in[1]);
            }});
  add_case({"minimum", "no ties", {distinct(m, 14), distinct(m, 15)}, [](const auto& in) {
              return minimum(in[0], in[1]);
            }});
  add_case({"rsub", "2 - x", {normal(m, 16)}, [](const auto& in) { return rsub(2.0, in[0]); }});
  add_case({"neg", "", {normal(m, 17)}, [](const auto& in) { return neg(in[0]); }});
  add_case({"abs", "off zero", {off_zero(m, 18)}, [](const auto& in) { return abs(in[0]); }});
  add_case({"sqrt", "positive", {positive(m, 19)}, [](const auto& in) { return sqrt(in[0]); }});
  add_case({"rsqrt", "positive", {positive(m, 20)}, [](const auto& in) { return rsqrt(in[0]); }});
  // exp, log, sigmoid, tanh, silu, softplus: libm and CUDA's differ by an ulp or two.
  add_case(
      {"exp", "", {normal(m, 21)}, [](const auto& in) { return exp(in[0]); }, true, 1e-5, 1e-5});
  add_case({"log", "positive", {positive(m, 22)}, [](const auto& in) { return log(in[0]); }});
  add_case({"sigmoid", "", {normal(m, 23)}, [](const auto& in) { return sigmoid(in[0]); }});
  add_case({"tanh", "", {normal(m, 24)}, [](const auto& in) { return tanh(in[0]); }});
  add_case({"relu", "off zero", {off_zero(m, 25)}, [](const auto& in) { return relu(in[0]); }});
  add_case({"leaky_relu", "slope 0.2", {off_zero(m, 26)}, [](const auto& in) {
              return leaky_relu(in[0], 0.2);
            }});
  add_case({"silu", "", {normal(m, 27)}, [](const auto& in) { return silu(in[0]); }});
  add_case({"softplus", "large |x| too", {mul(normal(m, 28), 20.0)}, [](const auto& in) {
              return softplus(in[0]);
            }});
  add_case({"clamp", "away from the bounds", {distinct(m, 29)}, [](const auto& in) {
              return clamp(in[0], -0.5, 0.6);
            }});
  add_case({"sign", "", {off_zero(m, 30)}, [](const auto& in) { return sign(in[0]); }, false});
  add_case({"round",
            "halves to even",
            {from_vector<double>({-2.5, -0.5, 0.5, 1.5, 2.4, 7.6}, {6})},
            [](const auto& in) { return round(in[0]); },
            false});
  // ---- comparisons and where ----
  for (const char* name : {"eq", "ne", "lt", "le", "gt", "ge"}) {
    const std::string op = name;
    add_case({op,
              "[3,4] vs [4], with equal entries",
              {round(mul(normal(m, 31), 2.0)), round(mul(normal({4}, 32), 2.0))},
              [op](const auto& in) {
                if (op == "eq") return eq(in[0], in[1]);
                if (op == "ne") return ne(in[0], in[1]);
                if (op == "lt") return lt(in[0], in[1]);
                if (op == "le") return le(in[0], in[1]);
                if (op == "gt") return gt(in[0], in[1]);
                return ge(in[0], in[1]);
              },
              false});
  }
  add_case({"where",
            "mask from the data, broadcast b",
            {normal(m, 33), normal(m, 34), normal({4}, 35)},
            [](const auto& in) { return where(gt(in[0], 0.0), in[1], in[2]); }});

  // ---- reductions ----
  const Shape r{2, 5, 3};
  add_case({"sum", "dims {0, 2}", {normal(r, 36)}, [](const auto& in) {
              return sum(in[0], {0, 2});
            }});
  add_case({"sum", "all of a view", {normal(r, 37)}, [](const auto& in) {
              return sum(in[0].transpose(0, 2));
            }});
  add_case({"mean", "dim 1 keepdim", {normal(r, 38)}, [](const auto& in) {
              return mean(in[0], {1}, true);
            }});
  add_case({"var", "unbiased, dim -1", {normal(r, 39)}, [](const auto& in) {
              return var(in[0], {-1});
            }});
  add_case({"max", "all, no ties", {distinct(r, 40)}, [](const auto& in) { return max(in[0]); }});
  add_case({"max", "dim 1, no ties", {distinct(r, 41)}, [](const auto& in) {
              return max(in[0], 1).values;
            }});
  add_case({"min", "dim 2 keepdim, no ties", {distinct(r, 42)}, [](const auto& in) {
              return min(in[0], 2, true).values;
            }});
  add_case({"argmax",
            "dim 1",
            {distinct(r, 43)},
            [](const auto& in) { return argmax(in[0], 1); },
            false});
  add_case({"argmin",
            "dim 0",
            {distinct(r, 44)},
            [](const auto& in) { return argmin(in[0], 0); },
            false});
  add_case({"squared_norm",
            "three tensors",
            {normal(r, 45), normal({7}, 46), normal(m, 47)},
            [](const auto& in) { return squared_norm(in); },
            false});
  add_case({"sum_to", "[2,5,3] -> [5,1]", {normal(r, 48)}, [](const auto& in) {
              return sum_to(in[0], {5, 1});
            }});
  add_case({"softmax", "dim 1 of large values", {mul(normal(r, 49), 4.0)}, [](const auto& in) {
              return softmax(in[0], 1);
            }});
  add_case({"log_softmax", "dim -1", {mul(normal(r, 50), 4.0)}, [](const auto& in) {
              return log_softmax(in[0], -1);
            }});

  // ---- linear algebra: 33-term sums, summed in other orders on each device ----
  add_case({"matmul",
            "[2,3,5,33] @ [33,4]",
            {normal({2, 3, 5, 33}, 51), normal({33, 4}, 52)},
            [](const auto& in) { return matmul(in[0], in[1]); },
            true,
            1e-4,
            1e-4});
  add_case({"bmm",
            "transposed operand",
            {normal({3, 33, 5}, 53), normal({3, 33, 4}, 54)},
            [](const auto& in) { return bmm(in[0].transpose(1, 2), in[1]); },
            true,
            1e-4,
            1e-4});
  add_case({"linear",
            "with bias",
            {normal({6, 33}, 55), normal({4, 33}, 56), normal({4}, 57)},
            [](const auto& in) { return linear(in[0], in[1], in[2]); },
            true,
            1e-4,
            1e-4});

  // ---- convolution and resampling ----
  // cuDNN may pick Winograd/FFT-like algorithms that transform the sums: ~1e-4 relative.
  add_case({"conv2d",
            "3x3 same, bias",
            {normal({2, 3, 7, 6}, 58), normal({4, 3, 3, 3}, 59), normal({4}, 60)},
            [](const auto& in) {
              return conv2d(in[0], in[1], in[2], {{1, 1}, {1, 1}, {1, 1}});
            },
            true,
            5e-4,
            5e-4});
  add_case({"conv2d",
            "4x4 stride 2, dilation, no bias",
            {normal({1, 2, 11, 10}, 61), normal({3, 2, 4, 4}, 62)},
            [](const auto& in) {
              return conv2d(in[0], in[1], Tensor(), {{2, 2}, {1, 2}, {1, 2}});
            },
            true,
            5e-4,
            5e-4});
  add_case({"upsample_nearest2d", "x2", {normal({2, 3, 4, 5}, 63)}, [](const auto& in) {
              return upsample_nearest2d(in[0], 2);
            }});
  add_case({"avg_pool2d", "3x3 stride 2 pad 1", {normal({2, 3, 7, 6}, 64)}, [](const auto& in) {
              return avg_pool2d(in[0], 3, 2, 1);
            }});
  add_case({"max_pool2d",
            "overlapping 3x3 stride 1, no ties",
            {distinct({1, 2, 6, 5}, 65)},
            [](const auto& in) { return max_pool2d(in[0], 3, 1); }});
  add_case({"resize_bilinear", "up 3x4 to 5x7", {normal({2, 3, 3, 4}, 260)}, [](const auto& in) {
              return resize_bilinear(in[0], 5, 7);
            }});
  add_case({"resize_bilinear", "down 7x6 to 3x4", {normal({1, 2, 7, 6}, 261)}, [](const auto& in) {
              return resize_bilinear(in[0], 3, 4);
            }});
  add_case({"pad", "right/bottom, value 0.5", {normal({2, 3, 4, 5}, 66)}, [](const auto& in) {
              return pad(in[0], {0, 1, 2, 1}, 0.5);
            }});
  add_case({"reflection_pad", "1 on every side", {normal({2, 3, 4, 5}, 67)}, [](const auto& in) {
              return reflection_pad(in[0], {1, 1, 1, 1});
            }});

  // ---- normalisation: means and variances in double on both devices ----
  add_case({"group_norm",
            "8 channels, 4 groups",
            {normal({2, 8, 3, 5}, 68), normal({8}, 69), normal({8}, 70)},
            [](const auto& in) { return group_norm(in[0], 4, in[1], in[2]); },
            true,
            1e-4,
            1e-4});
  add_case({"group_norm_silu",
            "8 channels, 4 groups, bias shifting the values across silu's bend",
            {normal({2, 8, 3, 5}, 174), normal({8}, 175), normal({8}, 176)},
            [](const auto& in) { return group_norm_silu(in[0], 4, in[1], in[2]); },
            true,
            1e-4,
            1e-4});
  // Outside autocast it is group_norm_silu; under autocast on CUDA it writes a convolution's
  // operand, which only a convolution can take: CudaNorm.GroupNormSiluWritesTheConvolutionOperand
  // checks that path (the CPU reference would need bfloat16 convolutions every host may lack).
  add_case({"group_norm_silu_for_conv",
            "outside autocast: group_norm_silu",
            {normal({2, 8, 3, 5}, 264), normal({8}, 265), normal({8}, 266)},
            [](const auto& in) { return group_norm_silu_for_conv(in[0], 4, in[1], in[2]); },
            true,
            1e-4,
            1e-4});
  add_case(
      {"batch_norm",
       "training, batch statistics",
       {normal({4, 3, 3, 5}, 71), normal({3}, 72), normal({3}, 73)},
       [](const auto& in) { return batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true); },
       true,
       1e-4,
       1e-4});

  // ---- joining and indexing ----
  add_case({"concat", "dim 1", {normal({2, 3}, 74), normal({2, 5}, 75)}, [](const auto& in) {
              return concat({in[0], in[1]}, 1);
            }});
  add_case({"stack", "dim 0", {normal(m, 76), normal(m, 77)}, [](const auto& in) {
              return stack({in[0], in[1]}, 0);
            }});
  add_case({"index_select",
            "repeated indices",
            {normal({5, 3}, 78), indices({4, 0, 4, 2}, {4})},
            [](const auto& in) { return index_select(in[0], 0, in[1]); }});
  add_case({"embedding",
            "[2,3] indices",
            {normal({6, 4}, 79), indices({5, 0, 5, 1, 2, 3}, {2, 3})},
            [](const auto& in) { return embedding(in[0], in[1]); }});
  add_case({"gather",
            "dim 1",
            {normal({3, 4}, 80), indices({3, 0, 0, 1, 2, 2}, {3, 2})},
            [](const auto& in) { return gather(in[0], 1, in[1]); }});
  add_case({"index_add",
            "repeated targets",
            {normal({5, 3}, 81), indices({1, 4, 1}, {3}), normal({3, 3}, 82)},
            [](const auto& in) { return index_add(in[0], 0, in[1], in[2]); }});
  add_case({"scatter_add",
            "dim 1",
            {normal({2, 4}, 83), indices({0, 3, 3, 1, 1, 1}, {2, 3}), normal({2, 3}, 84)},
            [](const auto& in) { return scatter_add(in[0], 1, in[1], in[2]); }});
  add_case({"one_hot",
            "7 classes",
            {indices({6, 0, 3, 3}, {2, 2})},
            [](const auto& in) { return one_hot(in[0], 7); },
            false});
  add_case({"bincount",
            "5 classes",
            {indices({4, 0, 4, 2, 4, 0}, {6})},
            [](const auto& in) { return bincount(in[0], 5); },
            false});

  // ---- losses ----
  add_case(
      {"l1_loss", "no equal entries", {normal(m, 85), add(normal(m, 86), 3.0)}, [](const auto& in) {
         return l1_loss(in[0], in[1]);
       }});
  add_case({"mse_loss", "", {normal(m, 87), normal(m, 88)}, [](const auto& in) {
              return mse_loss(in[0], in[1]);
            }});
  add_case({"binary_cross_entropy_with_logits",
            "targets in [0, 1]",
            {mul(normal(m, 89), 3.0), sigmoid(normal(m, 90))},
            [](const auto& in) { return binary_cross_entropy_with_logits(in[0], in[1]); }});
  add_wide_cases(c);
  return c;
}

}  // namespace

namespace {

// The rows bench_ops times, with inputs the size of the fmnist step's activations (batch 64, 128
// channels at 16x16) or, for the softmax, of the quantizer's soft assignment (64x8x8 vectors, 64
// codes).
void flag_benchmarks(std::vector<OpCase>& cases) {
  auto activation = [](uint64_t seed) {
    Generator gen(seed);
    return randn({64, 128, 16, 16}, gen);
  };
  const std::vector<std::pair<std::string, std::function<std::vector<Tensor>()>>> rows = {
      {"add [3,4] + [4]",
       [=] {
         return std::vector<Tensor>{activation(1), activation(2)};
       }},
      {"mul [3,4] * [4]",
       [=] {
         return std::vector<Tensor>{activation(3), activation(4)};
       }},
      {"silu ", [=] { return std::vector<Tensor>{activation(5)}; }},
      {"sum all of a view", [=] { return std::vector<Tensor>{activation(6)}; }},
      {"squared_norm three tensors",
       [=] {
         return std::vector<Tensor>{activation(7), activation(8), ones({128})};
       }},
      {"softmax dim 1 of large values",
       [] {
         Generator gen(9);
         return std::vector<Tensor>{randn({4096, 64}, gen)};
       }},
      {"group_norm 8 channels, 4 groups",
       [=] {
         return std::vector<Tensor>{activation(10), ones({128}), zeros({128})};
       }},
  };
  for (const auto& [name, inputs] : rows) {
    auto it =
        std::find_if(cases.begin(), cases.end(), [&](const OpCase& c) { return c.name() == name; });
    VQ_CHECK(it != cases.end(), "op table: no case '{}' to benchmark", name);
    it->bench_inputs = inputs;
  }
  // The fused norm -> activation, on the same inputs as the norm.
  for (OpCase& c : cases) {
    if (c.op == "group_norm_silu") c.bench_inputs = rows.back().second;
  }
}

}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = [] {
    std::vector<OpCase> c = build_cases();
    flag_benchmarks(c);
    return c;
  }();
  return cases;
}

std::vector<std::string> op_names() {
  std::vector<std::string> names;
  for (const OpCase& c : op_cases()) {
    if (std::find(names.begin(), names.end(), c.op) == names.end()) names.push_back(c.op);
  }
  return names;
}

const std::vector<std::pair<std::string, std::string>>& op_exemptions() {
  static const std::vector<std::pair<std::string, std::string>> exemptions = [] {
    std::vector<std::pair<std::string, std::string>> e;
    for (const char* factory : {"zeros", "ones", "full", "zeros_like", "ones_like", "scalar_tensor",
                                "arange", "from_vector"}) {
      e.emplace_back(factory,
                     "a factory: no inputs; values in test_tensor, on CUDA in CudaFactory");
    }
    for (const char* random : {"rand", "randn", "uniform", "randint", "randperm"}) {
      e.emplace_back(random, "a random factory: streams in test_tensor, on CUDA in CudaRandom");
    }
    e.emplace_back("adam_step_",
                   "the fused optimizer step (in place, no autograd): PyTorch's numbers in "
                   "test_optim, CUDA in CudaOptim.FusedAdamMatchesCpu");
    e.emplace_back("set_num_threads", "a thread setting, not an op on tensors");
    e.emplace_back("get_num_threads", "a thread setting, not an op on tensors");
    return e;
  }();
  return exemptions;
}

}  // namespace vq::test
