// The op set. Each op checks its arguments (throwing vq::Error naming the op, shapes and dtypes),
// dispatches to the tensor's device backend, and, when an input requires grad, records its
// backward rule (written next to the forward in ops/<family>.cpp).
//
// Conventions: NCHW images; broadcasting follows NumPy; float ops accept float32 and float64 (the
// latter for gradchecks); index tensors are int64; masks are uint8. All results are new
// contiguous tensors unless the op is a view (see tensor.h).
#pragma once

#include <array>
#include <optional>
#include <utility>
#include <vector>

#include "autograd/generator.h"
#include "autograd/tensor.h"

namespace vq {

// ---- factories -------------------------------------------------------------------------------
Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = kCPU);
Tensor ones(const Shape& shape, DType dtype = DType::Float32, Device device = kCPU);
Tensor full(const Shape& shape, double value, DType dtype = DType::Float32, Device device = kCPU);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor scalar_tensor(double value, DType dtype = DType::Float32, Device device = kCPU);
Tensor arange(int64_t start, int64_t end, DType dtype = DType::Int64, Device device = kCPU);
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = kCPU);

// Random tensors from an explicit generator: the same (seed, offset) gives the same values on
// any thread count and on every device (a counter-based Philox stream).
Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::Float32, Device device = kCPU);
Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::Float32,
             Device device = kCPU);
Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen,
               DType dtype = DType::Float32, Device device = kCPU);
Tensor randint(int64_t lo, int64_t hi, const Shape& shape, Generator& gen, Device device = kCPU);
Tensor randperm(int64_t n, Generator& gen, Device device = kCPU);  // int64

// ---- elementwise (broadcasting) ---------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor pow(const Tensor& a, double exponent);
Tensor rsub(double a, const Tensor& b);  // a - b

Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor silu(const Tensor& x);
Tensor softplus(const Tensor& x);  // log(1 + e^x), stable for large |x|
Tensor clamp(const Tensor& x, double lo, double hi);
Tensor sign(const Tensor& x);   // no gradient (zero almost everywhere)
Tensor round(const Tensor& x);  // no gradient; halves go to even, like PyTorch

// Comparisons give uint8 masks (no gradient).
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
// cond ? a : b, broadcasting all three; cond is uint8.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---- reductions (dims may be negative; an empty list means all dims) ------------------------
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Variance with Bessel's correction when unbiased (divides by n - 1).
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, bool unbiased = true,
           bool keepdim = false);
Tensor max(const Tensor& x);  // over all elements
Tensor min(const Tensor& x);
struct ValuesIndices {
  Tensor values;
  Tensor indices;  // int64
};
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
// The sum of the squares of all elements of all tensors (one device), accumulated in double: a
// float64 scalar on their device. A global gradient norm (squared) and a finite check in one pass,
// read with one item(). Not differentiable: a statistic of gradients.
Tensor squared_norm(const std::vector<Tensor>& tensors);
// Sums `grad` over broadcast dims so it has `shape` (the one place broadcasting is undone).
Tensor sum_to(const Tensor& grad, const Shape& shape);

// ---- linear algebra ------------------------------------------------------------------------
// [.., M, K] @ [K, N] or batched [B.., M, K] @ [B.., K, N] (batch dims broadcast).
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor bmm(const Tensor& a, const Tensor& b);  // [B, M, K] @ [B, K, N]
// x @ weight^T + bias; weight [out, in], bias [out] or undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- convolution and resampling (NCHW) -------------------------------------------------------
struct Conv2dOptions {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
};
// x [N, C, H, W], weight [O, C, kH, kW], bias [O] or undefined; residual (the result's shape)
// or undefined is added to the result where it is written: conv2d(h, w, b, o, x) is x + conv2d(h,
// w, b, o) in one pass (a ResBlock's shortcut; bit-equal to the add).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              const Conv2dOptions& options = {}, const Tensor& residual = Tensor());
Tensor upsample_nearest2d(const Tensor& x, int64_t scale);
// count_include_pad: the padding counts in every window's divisor (PyTorch's default); without
// it, a window divides by its positions inside the image (the FID Inception network's pools).
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding = 0,
                  bool count_include_pad = true);
// padding (at most kernel/2) adds -inf borders: they never win.
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding = 0);
// Bilinear resampling to [N, C, height, width] as torch.nn.functional.interpolate(mode=
// "bilinear", align_corners=False) does it, without antialiasing: each output pixel blends the two
// nearest input rows and columns, at source position (i + 0.5) * in / out - 0.5 clamped to the
// image. Built from index_select and a weighted sum (W first, then H), so it runs and
// differentiates on every device; the same size returns x unchanged.
Tensor resize_bilinear(const Tensor& x, int64_t height, int64_t width);
// Constant padding; `pads` lists (before, after) pairs starting at the LAST dim, like
// torch.nn.functional.pad: {left, right, top, bottom} pads W then H.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0.0);
// Reflection padding, `pads` as for pad(): the border mirrors the interior without repeating the
// edge, like torch.nn.functional.pad(mode="reflect"); each pad must be below its dim's size.
Tensor reflection_pad(const Tensor& x, const std::vector<int64_t>& pads);

// ---- normalisation --------------------------------------------------------------------------
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias,
                  double eps = 1e-5);
// silu(group_norm(x, ...)) in one pass (the norm -> activation of every ResBlock): the normalised
// values are never stored, backward recomputes them; equal to the two ops on the CPU.
Tensor group_norm_silu(const Tensor& x, int64_t num_groups, const Tensor& weight,
                       const Tensor& bias, double eps = 1e-5);
// group_norm_silu for a convolution to read (every ResBlock's norm -> activation -> conv): under
// autocast, where conv2d hands the backend low-precision channels-last operands (CUDA), the
// values are written once, straight into that operand (bfloat16, [N, H, W, C] memory behind the
// [N, C, H, W] shape), and never in float32; conv2d takes it as it is, every other op refuses
// it. Elsewhere, and with VQ_NORM_WRITES_CONV_OPERAND=0, exactly group_norm_silu. The gradient
// reaching it is float32 either way.
Tensor group_norm_silu_for_conv(const Tensor& x, int64_t num_groups, const Tensor& weight,
                                const Tensor& bias, double eps = 1e-5);
// Training mode normalises with batch statistics over (N, H, W) and, when running_mean/var are
// defined, updates them in place: r = (1 - momentum) r + momentum * stat (unbiased variance).
// Evaluation mode normalises with the running statistics.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum = 0.1,
                  double eps = 1e-5);
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// ---- joining and indexing --------------------------------------------------------------------
Tensor concat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
// out = x taken at `index` (int64, 1-D) along dim.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// weight [K, D], indices int64 of any shape -> [indices.shape..., D].
Tensor embedding(const Tensor& weight, const Tensor& indices);
// out[..i..] = x[..index[..i..]..] along dim; index has x's rank.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// out = x, then out[index[i]] += src[i] along dim (index 1-D).
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// out = x, then out[..index[..i..]..] += src[..i..] along dim (index shaped like src).
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// int64 class ids -> [..., num_classes] of `dtype` (no gradient).
Tensor one_hot(const Tensor& indices, int64_t num_classes, DType dtype = DType::Float32);
// Counts of each value in [0, num_classes) of an int64 tensor, as int64 [num_classes].
Tensor bincount(const Tensor& indices, int64_t num_classes);

// ---- losses (mean over all elements) ----------------------------------------------------------
Tensor l1_loss(const Tensor& input, const Tensor& target);
Tensor mse_loss(const Tensor& input, const Tensor& target);
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target);

// ---- fused optimizer step (no autograd; updates param, exp_avg, exp_avg_sq in place) --------
struct AdamStep {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;    // 1-based, for bias correction
  bool decoupled;  // AdamW: decay the weights directly instead of adding wd * p to the gradient
};
void adam_step_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                const Tensor& exp_avg_sq, const AdamStep& hp);
// The same update for many parameters at once, all on one device in one dtype at one step: on a
// GPU one kernel launch per few dozen tensors instead of one per tensor (a model has hundreds).
struct AdamTensors {
  Tensor param, grad, exp_avg, exp_avg_sq;
};
void adam_step_(const std::vector<AdamTensors>& tensors, const AdamStep& hp);

// ---- threads ---------------------------------------------------------------------------------
void set_num_threads(int n);  // CPU kernels, oneDNN and BLAS
int get_num_threads();

// ---- operators -------------------------------------------------------------------------------
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return div(a, b); }
inline Tensor operator+(double a, const Tensor& b) { return add(b, a); }
inline Tensor operator-(double a, const Tensor& b) { return rsub(a, b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
inline Tensor operator-(const Tensor& x) { return neg(x); }

}  // namespace vq
