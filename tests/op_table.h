// The op-case table: the ops of autograd/ops.h with their cases written once (inputs, how the op
// is called, whether it has a gradient, the float32 tolerance between devices and why), iterated
// by the float64 gradchecks (test_op_table) and the CUDA parity checks (test_cuda, on a GPU and
// on the loopback device); bench_ops times the rows flagged with benchmark inputs. Names that are
// not cases
// (factories, thread settings, the fused optimizer step) are exemptions with a reason each;
// test_op_table fails when a name declared in ops.h has neither.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"

namespace vq::test {

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct OpCase {
  std::string op;              // the name declared in ops.h
  std::string label;           // what this case exercises (shapes, options)
  std::vector<Tensor> inputs;  // float64 on the CPU; int64 inputs (indices) pass through
  OpFn fn;
  bool differentiable = true;  // gradchecked in float64 (inputs kept away from kinks)
  // float32 on two devices: the same expression, other summation orders and libm ulps.
  double atol32 = 1e-5, rtol32 = 1e-5;
  // Set on the rows bench_ops times: the same call on float32 CPU inputs the size of a training
  // step's (moved to the benchmark's device there).
  std::function<std::vector<Tensor>()> bench_inputs = {};
  std::string name() const { return op + " " + label; }
};

const std::vector<OpCase>& op_cases();
// {name, why it has no case}
const std::vector<std::pair<std::string, std::string>>& op_exemptions();

}  // namespace vq::test
