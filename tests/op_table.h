// The op-case table: the ops of autograd/ops.h with their cases written once (inputs, how the op
// is called, whether it has a gradient, the tolerances between devices and why), iterated by the
// float64 gradchecks (test_op_table) and the CUDA parity checks (test_cuda, one test per op, on a
// GPU and on the loopback device); bench_ops times the rows flagged with benchmark inputs. Names
// that are not cases (factories, thread settings, the fused optimizer step) are exemptions with a
// reason each; test_op_table fails when a name declared in ops.h has neither.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"

namespace vq::test {

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct OpCase {
  std::string op;     // the name declared in ops.h
  std::string label;  // what this case exercises (shapes, options)
  // On the CPU. Float64 ones are also run as float32 copies; other dtypes (int64 indices, uint8,
  // float16) pass through as they are.
  std::vector<Tensor> inputs;
  OpFn fn;                     // runs on the inputs' device; constants it makes go there too
  bool differentiable = true;  // gradients compared between devices (inputs kept off kinks)
  // float32 on two devices: the same expression, other summation orders and libm ulps.
  double atol32 = 1e-5, rtol32 = 1e-5;
  // float64 on two devices, forward and gradients: only the summation order differs.
  double atol64 = 1e-10, rtol64 = 1e-9;
  // Differentiable cases are also gradchecked by finite differences, except the ones with inputs
  // too large for that (two forward passes per input element): every op keeps a small case that
  // is, and the large ones still compare their gradients between devices.
  bool finite_differences = true;
  // Set on the rows bench_ops times: the same call on float32 CPU inputs the size of a training
  // step's (moved to the benchmark's device there).
  std::function<std::vector<Tensor>()> bench_inputs = {};
  std::string name() const { return op + " " + label; }
};

const std::vector<OpCase>& op_cases();
// The ops with cases, each once, in table order.
std::vector<std::string> op_names();
// {name, why it has no case}
const std::vector<std::pair<std::string, std::string>>& op_exemptions();

}  // namespace vq::test
