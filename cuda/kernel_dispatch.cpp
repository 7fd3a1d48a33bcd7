// CudaBackend methods served by our own kernels: they read the tensors' pointers, dtypes and
// sizes and call the launchers of kernels.h (elementwise.cu, reduce.cu, resample.cu, norm.cu,
// index.cu, optim.cu). Arguments arrive checked by the ops and outputs allocated; the [A, X, B]
// and NCHW kernels get contiguous tensors, the elementwise ones any strides.
#include <cmath>

#include "cuda/cuda_backend.h"
#include "cuda/kernels.h"
#include "cuda/tensor_args.h"

namespace vq::cuda {

namespace {

// Undefined (optional) tensors become null pointers.
const void* ptr_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
void* out_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

Planes planes_of(const Tensor& in, const Tensor& out) {
  return {in.size(0) * in.size(1), in.size(2), in.size(3), out.size(2), out.size(3)};
}

}  // namespace

// ---- elementwise ----

void CudaBackend::unary(UnaryOp op, UnaryParams p, const Tensor& x, const Tensor& out) {
  for_each_strided<2>(
      {&out, &x}, [&](const Strided<2>& s, int64_t n) { launch_unary(op, p, out.dtype(), s, n); });
}

void CudaBackend::unary_backward(UnaryOp op, UnaryParams p, const Tensor& dout, const Tensor& saved,
                                 const Tensor& dx) {
  for_each_strided<3>({&dx, &dout, &saved}, [&](const Strided<3>& s, int64_t n) {
    launch_unary_backward(op, p, dx.dtype(), s, n);
  });
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  for_each_strided<3>({&out, &a, &b}, [&](const Strided<3>& s, int64_t n) {
    launch_binary(op, out.dtype(), s, n);
  });
}

void CudaBackend::compare(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  for_each_strided<3>({&out, &a, &b},
                      [&](const Strided<3>& s, int64_t n) { launch_compare(op, a.dtype(), s, n); });
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  for_each_strided<4>({&out, &cond, &a, &b},
                      [&](const Strided<4>& s, int64_t n) { launch_where(out.dtype(), s, n); });
}

// ---- reductions and softmax ----

void CudaBackend::reduce(ReduceOp op, const Tensor& x, int64_t A, int64_t X, int64_t B,
                         const Tensor& out) {
  launch_reduce(static_cast<ReduceKind>(op), x.dtype(), x.raw_data(), out.raw_data(), A, X, B);
}

void CudaBackend::arg_reduce(bool min, const Tensor& x, int64_t A, int64_t X, int64_t B,
                             const Tensor& values, const Tensor& indices) {
  launch_arg_reduce(min, x.dtype(), x.raw_data(), values.raw_data(), indices.data<int64_t>(), A, X,
                    B);
}

void CudaBackend::squared_norm(const std::vector<Tensor>& xs, const Tensor& out) {
  int64_t blocks = 0;
  for (const Tensor& x : xs) blocks += x.numel() > 0 ? squared_norm_blocks(x.numel()) : 0;
  // Freed at the end of this scope while the kernels may still run: the caching allocator hands
  // it out again only to work queued after them on the same stream.
  const Tensor partials =
      Tensor::empty({std::max<int64_t>(blocks, 1)}, DType::Float64, out.device());
  double* at = partials.data<double>();
  for (const Tensor& x : xs) {
    if (x.numel() == 0) continue;
    launch_squared_norm_partials(x.dtype(), x.raw_data(), x.numel(), at);
    at += squared_norm_blocks(x.numel());
  }
  launch_sum_partials(partials.data<double>(), blocks, out.data<double>());
}

void CudaBackend::softmax(const Tensor& x, int64_t A, int64_t X, int64_t B, bool log,
                          const Tensor& y) {
  launch_softmax(x.dtype(), x.raw_data(), y.raw_data(), A, X, B, log);
}

void CudaBackend::softmax_backward(const Tensor& dy, const Tensor& y, int64_t A, int64_t X,
                                   int64_t B, bool log, const Tensor& dx) {
  launch_softmax_backward(y.dtype(), dy.raw_data(), y.raw_data(), dx.raw_data(), A, X, B, log);
}

// ---- resampling ----

void CudaBackend::upsample_nearest2d(const Tensor& x, int64_t scale, const Tensor& y) {
  launch_upsample_nearest2d(x.dtype(), x.raw_data(), y.raw_data(), planes_of(x, y), scale);
}

void CudaBackend::upsample_nearest2d_backward(const Tensor& dy, int64_t scale, const Tensor& dx) {
  launch_upsample_nearest2d_backward(dy.dtype(), dy.raw_data(), dx.raw_data(), planes_of(dx, dy),
                                     scale);
}

void CudaBackend::avg_pool2d(const Tensor& x, int64_t k, int64_t stride, int64_t pad,
                             bool count_pad, const Tensor& y) {
  launch_avg_pool2d(x.dtype(), x.raw_data(), y.raw_data(), planes_of(x, y), k, stride, pad,
                    count_pad);
}

void CudaBackend::avg_pool2d_backward(const Tensor& dy, int64_t k, int64_t stride, int64_t pad,
                                      bool count_pad, const Tensor& dx) {
  launch_avg_pool2d_backward(dy.dtype(), dy.raw_data(), dx.raw_data(), planes_of(dx, dy), k, stride,
                             pad, count_pad);
}

void CudaBackend::max_pool2d(const Tensor& x, int64_t k, int64_t stride, int64_t pad,
                             const Tensor& y, const Tensor& indices) {
  launch_max_pool2d(x.dtype(), x.raw_data(), y.raw_data(), indices.data<int64_t>(), planes_of(x, y),
                    k, stride, pad);
}

void CudaBackend::max_pool2d_backward(const Tensor& dy, const Tensor& indices, int64_t k,
                                      int64_t stride, int64_t pad, const Tensor& dx) {
  launch_max_pool2d_backward(dy.dtype(), dy.raw_data(), indices.data<int64_t>(), dx.raw_data(),
                             planes_of(dx, dy), k, stride, pad, deterministic());
}

// ---- normalisation ----

void CudaBackend::group_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t G,
                             double eps, bool silu, const Tensor& y, const Tensor& mean,
                             const Tensor& rstd) {
  launch_group_norm(x.dtype(), x.raw_data(), ptr_or_null(weight), ptr_or_null(bias), x.size(0),
                    x.size(1), x.size(2), G, eps, silu, y.raw_data(), mean.raw_data(),
                    rstd.raw_data());
}

bool CudaBackend::group_norm_channels_last(const Tensor& x, const Tensor& weight,
                                           const Tensor& bias, int64_t G, double eps, bool silu,
                                           const Tensor& y, const Tensor& mean,
                                           const Tensor& rstd) {
  if (x.dtype() != DType::Float32) return false;
  return launch_group_norm_channels_last(
      x.data<float>(), static_cast<const float*>(ptr_or_null(weight)),
      static_cast<const float*>(ptr_or_null(bias)), x.size(0), x.size(1), x.size(2), G, eps, silu,
      y.raw_data(), y.dtype(), mean.data<float>(), rstd.data<float>());
}

void CudaBackend::group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                      const Tensor& bias, const Tensor& mean, const Tensor& rstd,
                                      int64_t G, bool silu, const Tensor& dx, const Tensor& dweight,
                                      const Tensor& dbias) {
  launch_group_norm_backward(x.dtype(), dy.raw_data(), x.raw_data(), ptr_or_null(weight),
                             ptr_or_null(bias), mean.raw_data(), rstd.raw_data(), x.size(0),
                             x.size(1), x.size(2), G, silu, out_or_null(dx), out_or_null(dweight),
                             out_or_null(dbias));
}

void CudaBackend::batch_norm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) {
  launch_batch_norm_stats(x.dtype(), x.raw_data(), x.size(0), x.size(1), x.size(2), mean.raw_data(),
                          var.raw_data());
}

void CudaBackend::batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                   const Tensor& weight, const Tensor& bias, const Tensor& y) {
  launch_batch_norm_apply(x.dtype(), x.raw_data(), mean.raw_data(), invstd.raw_data(),
                          ptr_or_null(weight), ptr_or_null(bias), x.size(0), x.size(1), x.size(2),
                          y.raw_data());
}

void CudaBackend::batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& mean,
                                      const Tensor& invstd, const Tensor& weight, bool training,
                                      const Tensor& dx, const Tensor& dweight,
                                      const Tensor& dbias) {
  launch_batch_norm_backward(x.dtype(), dy.raw_data(), x.raw_data(), mean.raw_data(),
                             invstd.raw_data(), ptr_or_null(weight), training, x.size(0), x.size(1),
                             x.size(2), out_or_null(dx), out_or_null(dweight), out_or_null(dbias));
}

// ---- indexing ----

void CudaBackend::index_select(const Tensor& x, int64_t A, int64_t X, int64_t B,
                               const Tensor& index, const Tensor& out) {
  launch_index_select(dtype_size(x.dtype()), x.raw_data(), A, X, B, index.data<int64_t>(),
                      index.numel(), out.raw_data());
}

void CudaBackend::index_add(const Tensor& out, int64_t A, int64_t X, int64_t B, const Tensor& index,
                            const Tensor& src) {
  launch_index_add(out.dtype(), out.raw_data(), A, X, B, index.data<int64_t>(), index.numel(),
                   src.raw_data(), deterministic());
}

void CudaBackend::gather(const Tensor& x, int64_t A, int64_t X, int64_t B, const Tensor& index,
                         const Tensor& out) {
  const int64_t I = index.numel() / std::max<int64_t>(1, A * B);
  launch_gather(dtype_size(x.dtype()), x.raw_data(), A, X, B, index.data<int64_t>(), I,
                out.raw_data());
}

void CudaBackend::scatter_add(const Tensor& out, int64_t A, int64_t X, int64_t B,
                              const Tensor& index, const Tensor& src) {
  const int64_t I = index.numel() / std::max<int64_t>(1, A * B);
  launch_scatter_add(out.dtype(), out.raw_data(), A, X, B, index.data<int64_t>(), I, src.raw_data(),
                     deterministic());
}

void CudaBackend::bincount(const Tensor& indices, const Tensor& counts) {
  launch_bincount(indices.data<int64_t>(), indices.numel(), counts.data<int64_t>(), counts.numel());
}

// ---- optimizer ----

namespace {

// The bias corrections and step constants exactly as optim_cpu.cpp computes them.
AdamArgs adam_args(const AdamStep& hp) {
  const double bc1 = 1.0 - std::pow(hp.beta1, static_cast<double>(hp.step));
  const double bc2 = 1.0 - std::pow(hp.beta2, static_cast<double>(hp.step));
  return {hp.lr / bc1,
          std::sqrt(bc2),
          hp.beta1,
          hp.beta2,
          hp.eps,
          hp.weight_decay,
          1.0 - hp.lr * hp.weight_decay,
          hp.decoupled};
}

}  // namespace

void CudaBackend::adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                            const Tensor& exp_avg_sq, const AdamStep& hp) {
  launch_adam(param.dtype(), param.raw_data(), grad.raw_data(), exp_avg.raw_data(),
              exp_avg_sq.raw_data(), param.numel(), adam_args(hp));
}

void CudaBackend::adam_step_multi(const std::vector<AdamTensors>& tensors, const AdamStep& hp) {
  if (tensors.empty()) return;
  std::vector<AdamPointers> pointers;
  pointers.reserve(tensors.size());
  for (const AdamTensors& t : tensors) {
    pointers.push_back({t.param.raw_data(), t.grad.raw_data(), t.exp_avg.raw_data(),
                        t.exp_avg_sq.raw_data(), t.param.numel()});
  }
  launch_adam_multi(tensors.front().param.dtype(), pointers, adam_args(hp));
}

}  // namespace vq::cuda
