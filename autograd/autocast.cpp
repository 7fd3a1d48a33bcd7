#include "autograd/autocast.h"

#include "autograd/error.h"

namespace vq {

namespace {

// The policy: the ops that run in the low precision, and why they can. An op not listed here
// computes in float32 under autocast too.
struct PolicyEntry {
  AutocastOp op;
  const char* name;
  const char* why;
};
constexpr PolicyEntry kLowPrecisionOps[] = {
    {AutocastOp::Conv2d, "conv2d (forward, backward-data, backward-weights)",
     "products of bf16 inputs accumulated in fp32: the bulk of the step's arithmetic"},
    {AutocastOp::Matmul, "matmul, bmm, linear (forward and both gradients; the attention products)",
     "operands rounded to the low precision, products accumulated in fp32 (by the fp32 GEMM: "
     "the numerics of a low-precision GEMM; GEMMs are under 1% of the step, so no kernel of its "
     "own)"},
};

thread_local DType t_autocast = DType::Float32;  // Float32: autocast off

}  // namespace

AutocastScope::AutocastScope(DType dtype) : previous_(t_autocast) {
  VQ_CHECK(dtype == DType::BFloat16 || dtype == DType::Float16 || dtype == DType::Float32,
           "AutocastScope: the low precision must be bfloat16 or float16 (or float32 to disable), "
           "got {}",
           dtype_name(dtype));
  t_autocast = dtype;
}

AutocastScope::~AutocastScope() { t_autocast = previous_; }

DType autocast_compute_dtype(AutocastOp op, DType input) {
  if (t_autocast == DType::Float32 || input != DType::Float32) return input;
  for (const PolicyEntry& e : kLowPrecisionOps) {
    if (e.op == op) return t_autocast;
  }
  return input;
}

std::string autocast_policy() {
  std::string out;
  for (const PolicyEntry& e : kLowPrecisionOps) out += fmt::format("{}: {}\n", e.name, e.why);
  out += "everything else: float32";
  return out;
}

}  // namespace vq
