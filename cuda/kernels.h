// The launchers of our own CUDA kernels: plain host functions over raw device pointers and sizes,
// implemented in the .cu files and called by the backend (cuda_backend.cpp and friends), which
// turns tensors into these arguments. The seam exists because nvcc cannot compile the tensor
// headers (fmt 9 in C++20), so no .cu file sees a Tensor; it also keeps the kernels readable.
//
// Size letters: n elements; [A, X, B] reductions (outer, axis, inner); P = N*C planes, H W input,
// OH OW output; N C S = batch, channels, H*W; G groups; I indices. All launches go to the legacy
// default stream and are checked (vq::Error on failure); none synchronises.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "autograd/dtype.h"
#include "autograd/elementwise_math.h"

namespace vq::cuda {

// Operands of an elementwise kernel viewed with one common shape (operand 0 is the output).
// Dimensions are coalesced on the host first; more than kMaxDims are split into several
// launches. Strides are in elements of each operand's own dtype (they may be 0: broadcasting).
constexpr int kMaxDims = 8;
template <int N>
struct Strided {
  void* data[N];
  int64_t sizes[kMaxDims];
  int64_t strides[N][kMaxDims];
  int ndim;
  bool dense;  // every operand steps by 1: element i sits at offset i
};

// Mirrors vq::ReduceOp (backend.h cannot be included here); cuda_backend checks they agree.
enum class ReduceKind : uint8_t { Sum, Max, Min };

// Adam constants, computed on the host exactly as optim_cpu.cpp does.
struct AdamArgs {
  double step_size, sqrt_bc2, beta1, beta2, eps, weight_decay, decay;
  bool decoupled;
};

struct Planes {
  int64_t P, H, W, OH, OW;
};

[[noreturn]] void throw_unsupported_dtype(const char* op, DType dtype);

// ---- copy.cu ----
void launch_copy(const Strided<2>& s, int64_t n, DType dst, DType src);
// y [N, C, P] float32 = x [N, P, C] (channels-last, float32/bfloat16/float16) + bias [C] +
// residual [N, C, P] (bias and residual may be null): a convolution's result, its bias and a
// ResBlock's shortcut in one pass; false (nothing done) where the sizes exceed the kernel's grid.
// The residual must not be y itself.
bool launch_channels_last_to_nchw(float* y, const void* x, DType x_dtype, const float* bias,
                                  const float* residual, int64_t N, int64_t C, int64_t P);
// Whether the tiled transposes take x [N, C, S] (their grid's limits).
bool channels_last_transpose_fits(int64_t N, int64_t C, int64_t S);
// The other way with a per-row affine map: y [N, S, C] (bfloat16 or float16, channels-last
// memory) = silu?(x * scale + shift) of x [N, C, S] float32, scale and shift per (n, c) [N * C]:
// a normalisation written straight into a convolution's operand. False (nothing done) where the
// sizes exceed the kernel's grid.
bool launch_affine_to_channels_last(void* y, DType y_dtype, const float* x, const float* scale,
                                    const float* shift, bool silu, int64_t N, int64_t C, int64_t S);

// ---- elementwise.cu ----
void launch_fill(const Strided<1>& s, int64_t n, DType dtype, double value);
void launch_arange(void* dst, DType dtype, int64_t n, int64_t start);
void launch_uniform(void* dst, DType dtype, int64_t n, double lo, double hi, uint64_t seed,
                    uint64_t offset);
void launch_normal(void* dst, DType dtype, int64_t n, double mean, double std, uint64_t seed,
                   uint64_t offset);
void launch_unary(UnaryOp op, UnaryParams p, DType dtype, const Strided<2>& s, int64_t n);
// s: dx, dout, saved
void launch_unary_backward(UnaryOp op, UnaryParams p, DType dtype, const Strided<3>& s, int64_t n);
void launch_binary(BinaryOp op, DType dtype, const Strided<3>& s, int64_t n);
// s: out (uint8), a, b (of in_dtype)
void launch_compare(CompareOp op, DType in_dtype, const Strided<3>& s, int64_t n);
// s: out, cond (uint8), a, b
void launch_where(DType dtype, const Strided<4>& s, int64_t n);
// Whether this build's kernels can run on the current GPU (no image for its architecture is the
// usual failure); also creates the context.
cudaError_t probe_kernel_image();

// ---- reduce.cu ----
void launch_reduce(ReduceKind op, DType dtype, const void* x, void* out, int64_t A, int64_t X,
                   int64_t B);
// Sum of squares in two passes: each block of the partials kernel writes one double (the count
// depends on n alone), then one block sums the `count` partials in a fixed order into out[0].
int64_t squared_norm_blocks(int64_t n);
void launch_squared_norm_partials(DType dtype, const void* x, int64_t n, double* partials);
void launch_sum_partials(const double* partials, int64_t count, double* out);
void launch_arg_reduce(bool min, DType dtype, const void* x, void* values, int64_t* indices,
                       int64_t A, int64_t X, int64_t B);
void launch_softmax(DType dtype, const void* x, void* y, int64_t A, int64_t X, int64_t B, bool log);
void launch_softmax_backward(DType dtype, const void* dy, const void* y, void* dx, int64_t A,
                             int64_t X, int64_t B, bool log);

// ---- resample.cu ----
void launch_upsample_nearest2d(DType dtype, const void* x, void* y, Planes d, int64_t scale);
void launch_upsample_nearest2d_backward(DType dtype, const void* dy, void* dx, Planes d,
                                        int64_t scale);
void launch_avg_pool2d(DType dtype, const void* x, void* y, Planes d, int64_t k, int64_t stride,
                       int64_t pad, bool count_pad);
void launch_avg_pool2d_backward(DType dtype, const void* dy, void* dx, Planes d, int64_t k,
                                int64_t stride, int64_t pad, bool count_pad);
void launch_max_pool2d(DType dtype, const void* x, void* y, int64_t* indices, Planes d, int64_t k,
                       int64_t stride, int64_t pad);
void launch_max_pool2d_backward(DType dtype, const void* dy, const int64_t* indices, void* dx,
                                Planes d, int64_t k, int64_t stride, int64_t pad,
                                bool deterministic);

// ---- norm.cu (w, b, dx, dweight, dbias may be null: absent) ----
void launch_group_norm(DType dtype, const void* x, const void* w, const void* b, int64_t N,
                       int64_t C, int64_t S, int64_t G, double eps, bool silu, void* y, void* mean,
                       void* rstd);
// launch_group_norm for float32 x whose result goes straight into channels-last memory y
// [N, S, C] of bfloat16 or float16 (the next convolution's operand): the same statistics, then
// one tiled pass; the float32 result is never written. False (nothing done) where the tiled pass
// does not fit its grid.
bool launch_group_norm_channels_last(const float* x, const float* w, const float* b, int64_t N,
                                     int64_t C, int64_t S, int64_t G, double eps, bool silu,
                                     void* y, DType y_dtype, float* mean, float* rstd);
void launch_group_norm_backward(DType dtype, const void* dy, const void* x, const void* w,
                                const void* b, const void* mean, const void* rstd, int64_t N,
                                int64_t C, int64_t S, int64_t G, bool silu, void* dx, void* dweight,
                                void* dbias);
void launch_batch_norm_stats(DType dtype, const void* x, int64_t N, int64_t C, int64_t S,
                             void* mean, void* var);
void launch_batch_norm_apply(DType dtype, const void* x, const void* mean, const void* invstd,
                             const void* w, const void* b, int64_t N, int64_t C, int64_t S,
                             void* y);
void launch_batch_norm_backward(DType dtype, const void* dy, const void* x, const void* mean,
                                const void* invstd, const void* w, bool training, int64_t N,
                                int64_t C, int64_t S, void* dx, void* dweight, void* dbias);

// ---- index.cu (index values are already range-checked by the op) ----
// out [A, I, B] = x [A, X, B] at index [I]; any dtype (moves elem_size-byte elements).
void launch_index_select(size_t elem_size, const void* x, int64_t A, int64_t X, int64_t B,
                         const int64_t* index, int64_t I, void* out);
// out [A, X, B] += src [A, I, B] at index [I]
// deterministic: each output element adds its contributions in index order (as the CPU does),
// instead of float atomics in no fixed order (backend.h, set_deterministic).
void launch_index_add(DType dtype, void* out, int64_t A, int64_t X, int64_t B, const int64_t* index,
                      int64_t I, const void* src, bool deterministic);
// out [A, I, B] = x [A, X, B] at index [A, I, B]
void launch_gather(size_t elem_size, const void* x, int64_t A, int64_t X, int64_t B,
                   const int64_t* index, int64_t I, void* out);
// out [A, X, B] += src [A, I, B] at index [A, I, B]
void launch_scatter_add(DType dtype, void* out, int64_t A, int64_t X, int64_t B,
                        const int64_t* index, int64_t I, const void* src, bool deterministic);
void launch_bincount(const int64_t* indices, int64_t n, int64_t* counts, int64_t K);

// ---- optim.cu ----
void launch_adam(DType dtype, void* param, const void* grad, void* exp_avg, void* exp_avg_sq,
                 int64_t n, const AdamArgs& a);
struct AdamPointers {
  void* param;
  const void* grad;
  void* exp_avg;
  void* exp_avg_sq;
  int64_t n;
};
void launch_adam_multi(DType dtype, const std::vector<AdamPointers>& tensors, const AdamArgs& a);

}  // namespace vq::cuda
