// The seam between ops and devices. An op checks its arguments, allocates its outputs and calls
// the kernel of the tensor's device through this interface; the CPU implementation lives in
// autograd/cpu/, the CUDA one in cuda/ (registered at start-up when the backend is built).
// Kernels receive outputs already allocated (contiguous) and inputs already checked, so they do
// no validation of their own beyond what the hardware needs.
//
// Index-op, softmax and reduction kernels see tensors as [A, X, B] (outer, the axis, inner) so
// one kernel serves every dim.
#pragma once

#include <cstdint>
#include <string>

#include "autograd/elementwise_math.h"
#include "autograd/ops.h"
#include "autograd/tensor.h"

namespace vq {

enum class ReduceOp : uint8_t { Sum, Max, Min };

struct ConvShape {
  int64_t N, C, H, W;  // input
  int64_t O, kH, kW;   // weight [O, C, kH, kW]
  int64_t OH, OW;      // output
  Conv2dOptions options;
  // The precision of the products (accumulation is float32 or wider): the input's dtype, or
  // bfloat16 under autocast (autograd/autocast.h) for float32 tensors.
  DType compute = DType::Float32;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // Devices of this type that can be used; when 0, why_unavailable() says what was found.
  // Counting creates no GPU context.
  virtual int device_count() = 0;
  // A GPU backend computes on one device per process. backend_for() selects the first index a
  // tensor asks for and refuses any other; select_device() chooses beforehand (each rank of a
  // data-parallel run, before any GPU context exists). It throws why the device cannot be used.
  // selected_device() is -1 until then; the CPU has nothing to choose.
  virtual void select_device(int index) {}
  virtual int selected_device() const { return 0; }
  virtual std::string why_unavailable() = 0;
  // Empty when this backend's kernels compute in `low` (e.g. bfloat16) natively and faster than
  // float32; otherwise why not.
  virtual std::string why_no_low_precision(DType low) = 0;

  // Waits until every kernel queued on this backend's devices has finished (no-op on the CPU,
  // whose kernels are synchronous). For timing; the ops never need it.
  virtual void synchronize() {}

  // ---- memory ----
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  // dst = src elementwise; same shape (src may carry 0-strides from expand), any dtypes.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  // Raw bytes between a contiguous tensor of this device and host memory.
  virtual void copy_from_host(const void* host, const Tensor& dst) = 0;
  virtual void copy_to_host(const Tensor& src, void* host) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;
  virtual void arange(const Tensor& dst, int64_t start) = 0;

  // ---- random (Philox; see philox.h) ----
  virtual void uniform(const Tensor& dst, double lo, double hi, uint64_t seed, uint64_t offset) = 0;
  virtual void normal(const Tensor& dst, double mean, double std, uint64_t seed,
                      uint64_t offset) = 0;

  // ---- elementwise: inputs are views expanded to out's shape (strides may be 0) ----
  virtual void unary(UnaryOp op, UnaryParams p, const Tensor& x, const Tensor& out) = 0;
  // dx = dout * d(op)/dx; `saved` is the op's output when unary_grad_uses_output(op), else its
  // input.
  virtual void unary_backward(UnaryOp op, UnaryParams p, const Tensor& dout, const Tensor& saved,
                              const Tensor& dx) = 0;
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  virtual void compare(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;

  // ---- reductions over X of a contiguous [A, X, B] tensor -> out [A, B] ----
  virtual void reduce(ReduceOp op, const Tensor& x, int64_t A, int64_t X, int64_t B,
                      const Tensor& out) = 0;
  // Values and int64 indices of the max (or min) along X -> [A, B]; ties pick the first index.
  virtual void arg_reduce(bool min, const Tensor& x, int64_t A, int64_t X, int64_t B,
                          const Tensor& values, const Tensor& indices) = 0;
  // Sum of the squares of every element of every tensor (contiguous float32 or float64, all on
  // this device), accumulated in double, into out (a float64 scalar on this device). The order of
  // summation depends on the sizes alone, so the result is reproducible.
  virtual void squared_norm(const std::vector<Tensor>& xs, const Tensor& out) = 0;

  // ---- GEMM: C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b], row-major, strided batches ----
  struct GemmArgs {
    bool trans_a = false, trans_b = false;
    int64_t M = 0, N = 0, K = 0;
    int64_t lda = 0, ldb = 0, ldc = 0;
    int64_t batch = 1, stride_a = 0, stride_b = 0, stride_c = 0;  // in elements
    double alpha = 1.0, beta = 0.0;
  };
  virtual void gemm(const GemmArgs& g, const Tensor& A, const Tensor& B, const Tensor& C) = 0;

  // ---- convolution (contiguous NCHW / OIHW; low-precision operands may be channels-last) ----
  // Whether the convolution kernels accept x, w and dy already in s.compute (a low precision)
  // beside float32 ones. Then conv2d casts each operand once per use and keeps the low copies it
  // saves for backward (the bias gradient is then taken from the float32 dy by the op); otherwise
  // the kernels convert float32 operands themselves. Outputs (y, dx, dw, dbias) stay float32.
  virtual bool takes_low_precision_operands() const { return false; }
  // With takes_low_precision_operands: whether those low copies are best written channels-last
  // (NHWC memory for x and dy, [O, kH, kW, C] for w, behind the same NCHW/OIHW shape), the layout
  // tensor-core convolutions read without transposing them first.
  virtual bool wants_channels_last_operands() const { return false; }
  // y = conv(x, w) + bias + residual; bias [O] and residual (y's shape and dtype, contiguous) may
  // be undefined. The residual is the ResBlock's shortcut, added where the result is written.
  virtual void conv2d_forward(const ConvShape& s, const Tensor& x, const Tensor& w,
                              const Tensor& bias, const Tensor& residual, const Tensor& y) = 0;
  virtual void conv2d_backward_data(const ConvShape& s, const Tensor& dy, const Tensor& w,
                                    const Tensor& dx) = 0;
  // dbias [O] = the sum of dy [N, O, OH, OW] over N, OH, OW (overwritten), dy in y's dtype.
  virtual void conv2d_backward_bias(const ConvShape& s, const Tensor& dy, const Tensor& dbias) = 0;
  // dw (and dbias when defined) are overwritten, not accumulated.
  virtual void conv2d_backward_weight(const ConvShape& s, const Tensor& dy, const Tensor& x,
                                      const Tensor& dw, const Tensor& dbias) = 0;

  // ---- resampling (NCHW contiguous) ----
  virtual void upsample_nearest2d(const Tensor& x, int64_t scale, const Tensor& y) = 0;
  virtual void upsample_nearest2d_backward(const Tensor& dy, int64_t scale, const Tensor& dx) = 0;
  // count_pad: every window divides by k*k (PyTorch's count_include_pad); otherwise by the number
  // of its positions inside the image.
  virtual void avg_pool2d(const Tensor& x, int64_t k, int64_t stride, int64_t pad, bool count_pad,
                          const Tensor& y) = 0;
  virtual void avg_pool2d_backward(const Tensor& dy, int64_t k, int64_t stride, int64_t pad,
                                   bool count_pad, const Tensor& dx) = 0;
  // indices: int64 [N, C, OH, OW], flat positions within each H*W plane; padded positions never
  // win (they are -inf).
  virtual void max_pool2d(const Tensor& x, int64_t k, int64_t stride, int64_t pad, const Tensor& y,
                          const Tensor& indices) = 0;
  // k, stride and pad as in forward: windows overlap when k > stride.
  virtual void max_pool2d_backward(const Tensor& dy, const Tensor& indices, int64_t k,
                                   int64_t stride, int64_t pad, const Tensor& dx) = 0;

  // ---- normalisation (contiguous) ----
  // x [N, C, S] (S = H*W); mean/rstd [N, G]; weight/bias [C] or undefined. With `silu`, y is
  // silu of the normalised value (the norm -> activation pair of every ResBlock in one pass),
  // which backward recomputes from x, mean, rstd, weight and bias instead of storing it.
  virtual void group_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t G,
                          double eps, bool silu, const Tensor& y, const Tensor& mean,
                          const Tensor& rstd) = 0;
  // group_norm of float32 x whose result goes straight into a convolution's low-precision
  // operand y [N, S, C] (contiguous bfloat16 or float16: channels-last memory), never written in
  // float32; mean and rstd as group_norm's. False where the backend has no such kernel (the
  // caller then writes float32 and converts): every backend but CUDA's.
  virtual bool group_norm_channels_last(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                        int64_t G, double eps, bool silu, const Tensor& y,
                                        const Tensor& mean, const Tensor& rstd) {
    return false;
  }
  virtual void group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const Tensor& bias, const Tensor& mean, const Tensor& rstd,
                                   int64_t G, bool silu, const Tensor& dx, const Tensor& dweight,
                                   const Tensor& dbias) = 0;
  // Per-channel mean and biased variance of x [N, C, S].
  virtual void batch_norm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) = 0;
  // y = (x - mean) * invstd * weight + bias, per channel (weight/bias may be undefined).
  virtual void batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                const Tensor& weight, const Tensor& bias, const Tensor& y) = 0;
  // training: the gradient flows through the batch statistics; else mean/invstd are constants.
  virtual void batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& mean,
                                   const Tensor& invstd, const Tensor& weight, bool training,
                                   const Tensor& dx, const Tensor& dweight,
                                   const Tensor& dbias) = 0;
  // Softmax over X of [A, X, B]; log selects log_softmax.
  virtual void softmax(const Tensor& x, int64_t A, int64_t X, int64_t B, bool log,
                       const Tensor& y) = 0;
  virtual void softmax_backward(const Tensor& dy, const Tensor& y, int64_t A, int64_t X, int64_t B,
                                bool log, const Tensor& dx) = 0;

  // ---- indexing ([A, X, B] views; index int64, checked in range by the op) ----
  // out [A, I, B] = x [A, X, B] at index [I] along X.
  virtual void index_select(const Tensor& x, int64_t A, int64_t X, int64_t B, const Tensor& index,
                            const Tensor& out) = 0;
  // out [A, X, B] += src [A, I, B] at index [I].
  virtual void index_add(const Tensor& out, int64_t A, int64_t X, int64_t B, const Tensor& index,
                         const Tensor& src) = 0;
  // out [A, I, B] = x [A, X, B] at index [A, I, B].
  virtual void gather(const Tensor& x, int64_t A, int64_t X, int64_t B, const Tensor& index,
                      const Tensor& out) = 0;
  // out [A, X, B] += src [A, I, B] at index [A, I, B].
  virtual void scatter_add(const Tensor& out, int64_t A, int64_t X, int64_t B, const Tensor& index,
                           const Tensor& src) = 0;
  virtual void bincount(const Tensor& indices, const Tensor& counts) = 0;

  // ---- optimizer ----
  virtual void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                         const Tensor& exp_avg_sq, const AdamStep& hp) = 0;
  // Every entry as adam_step would (the default does exactly that); a GPU backend batches them.
  virtual void adam_step_multi(const std::vector<AdamTensors>& tensors, const AdamStep& hp) {
    for (const AdamTensors& t : tensors) adam_step(t.param, t.grad, t.exp_avg, t.exp_avg_sq, hp);
  }
};

// The backend of a device; throws a clear error when the device's backend is not built in or no
// such device exists.
Backend& backend_for(Device device);
inline Backend& backend_for(const Tensor& t) { return backend_for(t.device()); }
// Called once by the CUDA library at start-up.
void register_backend(DeviceType type, Backend* backend);
bool backend_registered(DeviceType type);

// Reproducible GPU runs (--deterministic): accumulations that would otherwise use float atomics
// (index_add, scatter_add, the backward of overlapping max-pools) add in a fixed order, and
// cuDNN algorithms are picked among the deterministic ones. Off by default: the fastest
// algorithms, whose sums may differ in the last bits from run to run. The CPU kernels are
// deterministic either way.
void set_deterministic(bool on);
bool deterministic();

// What a piece of work asks of the devices, for benchmarks and budget tests (relaxed atomics:
// cheap, exact when one thread does the work):
//   host_reads     tensor values brought to the host: item(), to_vector(), .cpu() and other
//                  copies from a device to the CPU. Each is a wait for the GPU; counted on the CPU
//                  too, so a CPU test can hold a GPU step to its budget.
//   backend_calls  every backend_for(): kernel dispatches and allocations.
struct DispatchCounts {
  int64_t host_reads = 0, backend_calls = 0;
};
DispatchCounts dispatch_counts();
namespace detail {
void count_host_read();
}

// Tests only: makes "cuda" tensors a loopback device whose kernels are the CPU's (in its own
// memory, so transfers are real copies), replacing any CUDA backend, so that the CUDA tests run
// on machines without a GPU. Both sides then compute bit-equal results: loopback catches
// exceptions, wrong shapes, construction-order and device-placement bugs, not tolerance bugs.
void use_loopback_for_cuda();
bool cuda_is_loopback();

}  // namespace vq
