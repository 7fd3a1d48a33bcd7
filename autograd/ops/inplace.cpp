// In-place updates for optimizers, EMA statistics and buffer bookkeeping. They record no graph;
// a tensor that requires grad may be updated only with grad mode off (NoGradGuard), and every
// write bumps the storage version so a stale saved tensor is caught at backward time.
#include <omp.h>

#include "autograd/ops/op_util.h"

namespace vq {

namespace {

void check_inplace(const Tensor& self, const char* op) {
  check_defined(op, self, "destination");
  VQ_CHECK(!(grad_enabled() && self.requires_grad()),
           "{}: in-place update of a tensor that requires grad (shape {}) while grad mode is on; "
           "autograd still needs its value. Do the update inside a NoGradGuard scope (as optimizer "
           "steps do), or work on a clone()",
           op, shape_str(self.shape()));
}

// `other` broadcast to self's shape (self never broadcasts), on self's device and dtype.
Tensor operand_for(const Tensor& self, const Tensor& other, const char* op) {
  check_defined(op, other, "source");
  const Shape shape = broadcast_shapes(self.shape(), other.shape(), op);
  VQ_CHECK(shape == self.shape(), "{}: a source of shape {} cannot be broadcast into {}", op,
           shape_str(other.shape()), shape_str(self.shape()));
  VQ_CHECK(other.device() == self.device(), "{}: source on {} but destination on {}", op,
           other.device().str(), self.device().str());
  return other.to(self.dtype()).expand(self.shape());
}

// self = self (op) other; the caller has already run check_inplace.
void binary_inplace(const Tensor& self, const Tensor& other, BinaryOp op, const char* name) {
  NoGradGuard no_grad;  // operands are temporaries
  const Tensor rhs = operand_for(self, other, name);
  backend_for(self).binary(op, self, rhs, self);
  self.storage()->bump_version();
}

void unary_inplace(const Tensor& self, UnaryOp op, UnaryParams p, const char* name) {
  check_inplace(self, name);
  VQ_CHECK(is_floating(self.dtype()), "{}: needs a float tensor, got {}", name,
           dtype_name(self.dtype()));
  backend_for(self).unary(op, p, self, self);
  self.storage()->bump_version();
}

}  // namespace

const Tensor& Tensor::add_(const Tensor& other, double alpha) const {
  check_inplace(*this, "add_");
  if (alpha == 1.0) {
    binary_inplace(*this, other, BinaryOp::Add, "add_");
  } else {
    NoGradGuard no_grad;
    binary_inplace(*this, mul(other, alpha), BinaryOp::Add, "add_");
  }
  return *this;
}

const Tensor& Tensor::add_(double value) const {
  unary_inplace(*this, UnaryOp::AddScalar, {value, 0}, "add_");
  return *this;
}

const Tensor& Tensor::mul_(const Tensor& other) const {
  check_inplace(*this, "mul_");
  binary_inplace(*this, other, BinaryOp::Mul, "mul_");
  return *this;
}

const Tensor& Tensor::mul_(double value) const {
  unary_inplace(*this, UnaryOp::MulScalar, {value, 0}, "mul_");
  return *this;
}

const Tensor& Tensor::clamp_(double lo, double hi) const {
  unary_inplace(*this, UnaryOp::Clamp, {lo, hi}, "clamp_");
  return *this;
}

const Tensor& Tensor::copy_(const Tensor& src) const {
  check_inplace(*this, "copy_");
  check_defined("copy_", src, "source");
  NoGradGuard no_grad;
  const Shape shape = broadcast_shapes(this->shape(), src.shape(), "copy_");
  VQ_CHECK(shape == this->shape(), "copy_: a source of shape {} cannot be broadcast into {}",
           shape_str(src.shape()), shape_str(this->shape()));
  if (src.device() == device()) {
    backend_for(*this).copy(src.expand(this->shape()), *this);
  } else {
    // Across devices: make the source contiguous (and of our dtype) where it lives, move the
    // bytes, then scatter into our (possibly strided) layout.
    const Tensor packed = src.to(dtype()).contiguous();
    Tensor landed = Tensor::empty(packed.shape(), dtype(), device());
    if (src.device().is_cpu()) {
      backend_for(landed).copy_from_host(packed.raw_data(), landed);
    } else {
      VQ_CHECK(device().is_cpu(), "copy_: direct copies between two GPUs are not supported");
      backend_for(packed).copy_to_host(packed, landed.raw_data());
    }
    backend_for(*this).copy(landed.expand(this->shape()), *this);
  }
  storage()->bump_version();
  return *this;
}

const Tensor& Tensor::fill_(double value) const {
  check_inplace(*this, "fill_");
  backend_for(*this).fill(*this, value);
  storage()->bump_version();
  return *this;
}

const Tensor& Tensor::zero_() const { return fill_(0.0); }

const Tensor& Tensor::lerp_(const Tensor& end, double weight) const {
  // self += weight * (end - self)
  check_inplace(*this, "lerp_");
  NoGradGuard no_grad;
  const Tensor step = mul(sub(operand_for(*this, end, "lerp_"), *this), weight);
  binary_inplace(*this, step, BinaryOp::Add, "lerp_");
  return *this;
}

namespace {

void check_adam(const AdamTensors& a) {
  const Tensor& param = a.param;
  for (const Tensor* t : {&a.param, &a.grad, &a.exp_avg, &a.exp_avg_sq}) {
    check_floating("adam_step_", *t);
    VQ_CHECK(t->shape() == param.shape() && t->dtype() == param.dtype() &&
                 t->device() == param.device() && t->is_contiguous(),
             "adam_step_: param, grad and moments must share shape, dtype and device and be "
             "contiguous (param {} {}, got {} {})",
             shape_str(param.shape()), dtype_name(param.dtype()), shape_str(t->shape()),
             dtype_name(t->dtype()));
  }
}

void bump_adam_versions(const AdamTensors& a) {
  for (const Tensor* t : {&a.param, &a.exp_avg, &a.exp_avg_sq}) t->storage()->bump_version();
}

}  // namespace

void adam_step_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                const Tensor& exp_avg_sq, const AdamStep& hp) {
  const AdamTensors a{param, grad, exp_avg, exp_avg_sq};
  check_adam(a);
  VQ_CHECK(hp.step >= 1, "adam_step_: step must start at 1, got {}", hp.step);
  backend_for(param).adam_step(param, grad, exp_avg, exp_avg_sq, hp);
  bump_adam_versions(a);
}

void adam_step_(const std::vector<AdamTensors>& tensors, const AdamStep& hp) {
  if (tensors.empty()) return;
  const Tensor& first = tensors.front().param;
  for (const AdamTensors& a : tensors) {
    check_adam(a);
    VQ_CHECK(a.param.device() == first.device() && a.param.dtype() == first.dtype(),
             "adam_step_: every parameter of one call must share device and dtype ({} {} and {} "
             "{})",
             first.device().str(), dtype_name(first.dtype()), a.param.device().str(),
             dtype_name(a.param.dtype()));
  }
  VQ_CHECK(hp.step >= 1, "adam_step_: step must start at 1, got {}", hp.step);
  backend_for(first).adam_step_multi(tensors, hp);
  for (const AdamTensors& a : tensors) bump_adam_versions(a);
}

void set_num_threads(int n) {
  VQ_CHECK(n >= 1, "set_num_threads: need at least 1 thread, got {}", n);
  omp_set_num_threads(n);
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace vq
