// Mixed precision ("autocast", as in PyTorch): inside an AutocastScope, the ops listed in the
// policy table (autocast.cpp) multiply in a low precision (bfloat16) with float32 accumulation;
// every other op, and these ops outside a scope, compute in float32. A scope of Float32 inside
// another makes an explicit float32 island (the quantizers open one).
//
// Tensors stay float32 between ops: the conversion to bfloat16 happens inside the kernel, where
// the CPU backend already reorders its inputs into oneDNN's blocked layouts (the cast rides on
// that pass), and the float32 result keeps its accumulator's precision. So everything outside
// the table is an fp32 island by construction: GroupNorm and its statistics, softmax, losses,
// reductions, the optimizer, master weights and its state, and the whole quantizer (distances,
// argmin and sampling, EMA statistics, entropy terms, the codebook: a bf16 distance has about 3
// significant digits and would flip nearest codes).
//
// The scope is per thread; a backward pass runs each op's gradient in the precision its forward
// used (it is recorded with the op).
#pragma once

#include <string>

#include "autograd/dtype.h"

namespace vq {

enum class AutocastOp { Conv2d, Matmul };

class AutocastScope {
 public:
  // dtype: BFloat16 (the only low precision the kernels implement); Float32 disables autocast
  // inside the scope.
  explicit AutocastScope(DType dtype);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  DType previous_;
};

// The precision `op` computes in now, for inputs of `input` dtype: the scope's low precision
// when the policy lists the op and the input is float32; otherwise the input's own dtype.
DType autocast_compute_dtype(AutocastOp op, DType input);

// The policy table as text, one line per op (for --help texts and the README).
std::string autocast_policy();

}  // namespace vq
