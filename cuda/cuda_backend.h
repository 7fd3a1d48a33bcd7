// The CUDA backend: every kernel of autograd/backend.h on one GPU per process (the first index a
// tensor asks for, or the one select_device() chose; see Backend::select_device).
// Registered at start-up by register_cuda_backend() (a static initializer in cuda_backend.cpp;
// link vq_cuda whole-archive, which the vq_backends target does, so the linker keeps it).
//
// Where the methods live: memory, copies, fills and random streams in cuda_backend.cpp; our own
// kernels' entry points in kernel_dispatch.cpp (the kernels in the .cu files); gemm in
// gemm_cublas.cpp; conv2d in conv_cudnn.cpp. All work is queued on the legacy default stream;
// only copies to the host wait for it.
// Left out: several GPUs in one process (Backend::allocate has no device argument; data
// parallelism runs one process per GPU), streams other than the default, and float16/bfloat16
// math outside the convolutions (which autocast runs in the low precision, conv_cudnn.cpp).
#pragma once

#include <atomic>
#include <mutex>
#include <string>

#include "autograd/backend.h"

namespace vq::cuda {

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  // The visible GPUs (0 when none answers or the selected one cannot run this build's kernels;
  // why_unavailable() says why). Counting creates no context.
  int device_count() override;
  // cudaSetDevice before anything else touches the GPU, then checks that it runs our kernels.
  void select_device(int index) override;
  int selected_device() const override { return selected_.load(std::memory_order_acquire); }
  std::string why_unavailable() override;
  std::string why_no_low_precision(DType low) override;
  bool takes_low_precision_operands() const override { return true; }
  bool wants_channels_last_operands() const override;
  void synchronize() override;

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  void copy(const Tensor& src, const Tensor& dst) override;
  void copy_from_host(const void* host, const Tensor& dst) override;
  void copy_to_host(const Tensor& src, void* host) override;
  void fill(const Tensor& dst, double value) override;
  void arange(const Tensor& dst, int64_t start) override;
  void uniform(const Tensor& dst, double lo, double hi, uint64_t seed, uint64_t offset) override;
  void normal(const Tensor& dst, double mean, double std, uint64_t seed, uint64_t offset) override;

  void unary(UnaryOp op, UnaryParams p, const Tensor& x, const Tensor& out) override;
  void unary_backward(UnaryOp op, UnaryParams p, const Tensor& dout, const Tensor& saved,
                      const Tensor& dx) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void compare(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;

  void reduce(ReduceOp op, const Tensor& x, int64_t A, int64_t X, int64_t B,
              const Tensor& out) override;
  void arg_reduce(bool min, const Tensor& x, int64_t A, int64_t X, int64_t B, const Tensor& values,
                  const Tensor& indices) override;
  void squared_norm(const std::vector<Tensor>& xs, const Tensor& out) override;
  void softmax(const Tensor& x, int64_t A, int64_t X, int64_t B, bool log,
               const Tensor& y) override;
  void softmax_backward(const Tensor& dy, const Tensor& y, int64_t A, int64_t X, int64_t B,
                        bool log, const Tensor& dx) override;

  void gemm(const GemmArgs& g, const Tensor& A, const Tensor& B, const Tensor& C) override;

  void conv2d_forward(const ConvShape& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                      const Tensor& residual, const Tensor& y) override;
  void conv2d_backward_data(const ConvShape& s, const Tensor& dy, const Tensor& w,
                            const Tensor& dx) override;
  void conv2d_backward_bias(const ConvShape& s, const Tensor& dy, const Tensor& dbias) override;
  void conv2d_backward_weight(const ConvShape& s, const Tensor& dy, const Tensor& x,
                              const Tensor& dw, const Tensor& dbias) override;

  void upsample_nearest2d(const Tensor& x, int64_t scale, const Tensor& y) override;
  void upsample_nearest2d_backward(const Tensor& dy, int64_t scale, const Tensor& dx) override;
  void avg_pool2d(const Tensor& x, int64_t k, int64_t stride, int64_t pad, bool count_pad,
                  const Tensor& y) override;
  void avg_pool2d_backward(const Tensor& dy, int64_t k, int64_t stride, int64_t pad, bool count_pad,
                           const Tensor& dx) override;
  void max_pool2d(const Tensor& x, int64_t k, int64_t stride, int64_t pad, const Tensor& y,
                  const Tensor& indices) override;
  void max_pool2d_backward(const Tensor& dy, const Tensor& indices, int64_t k, int64_t stride,
                           int64_t pad, const Tensor& dx) override;

  void group_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t G, double eps,
                  bool silu, const Tensor& y, const Tensor& mean, const Tensor& rstd) override;
  bool group_norm_channels_last(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                int64_t G, double eps, bool silu, const Tensor& y,
                                const Tensor& mean, const Tensor& rstd) override;
  void group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                           const Tensor& bias, const Tensor& mean, const Tensor& rstd, int64_t G,
                           bool silu, const Tensor& dx, const Tensor& dweight,
                           const Tensor& dbias) override;
  void batch_norm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) override;
  void batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                        const Tensor& weight, const Tensor& bias, const Tensor& y) override;
  void batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& mean,
                           const Tensor& invstd, const Tensor& weight, bool training,
                           const Tensor& dx, const Tensor& dweight, const Tensor& dbias) override;

  void index_select(const Tensor& x, int64_t A, int64_t X, int64_t B, const Tensor& index,
                    const Tensor& out) override;
  void index_add(const Tensor& out, int64_t A, int64_t X, int64_t B, const Tensor& index,
                 const Tensor& src) override;
  void gather(const Tensor& x, int64_t A, int64_t X, int64_t B, const Tensor& index,
              const Tensor& out) override;
  void scatter_add(const Tensor& out, int64_t A, int64_t X, int64_t B, const Tensor& index,
                   const Tensor& src) override;
  void bincount(const Tensor& indices, const Tensor& counts) override;

  void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                 const Tensor& exp_avg_sq, const AdamStep& hp) override;
  void adam_step_multi(const std::vector<AdamTensors>& tensors, const AdamStep& hp) override;

 private:
  void probe();  // once: how many GPUs answer (no context)

  std::once_flag probed_;
  std::mutex select_mutex_;
  std::atomic<int> selected_{-1};
  std::atomic<int> count_{0};
  std::string reason_;
};

// Registers the backend for DeviceType::CUDA (idempotent). Runs from a static initializer of
// this library; call it yourself if you link vq_cuda without whole-archive.
void register_cuda_backend();

}  // namespace vq::cuda
