// conv2d on cuDNN's legacy convolution API (still in cuDNN 9, in libcudnn_cnn): forward,
// backward-data and backward-filter, plus bias add (cudnnAddTensor) and the bias gradient
// (cudnnConvolutionBackwardBias), float32 and float64, NCHW / OIHW.
// Under autocast (ConvShape::compute bfloat16 or float16) cuDNN gets low-precision copies of the
// float32 operands, accumulates in float32 (its PSEUDO_BFLOAT16 / PSEUDO_HALF configurations, on
// tensor cores) and writes its result in the low precision, converted back to float32 as
// PyTorch's autocast does when the next op needs float32. Bias and bias gradient stay float32.
// The low-precision operands and results are channels-last (NHWC activations, [O, kH, kW, C]
// filters: what tensor-core kernels read, so cuDNN transposes nothing itself); conv2d hands them
// over so (Backend::wants_channels_last_operands), and the results go back to NCHW float32 in one
// transposing copy. VQ_CHANNELS_LAST=0: NCHW throughout, as before 2026-12-07.
// Each shape gets a plan (descriptors, RAII) the first time it is seen; each direction of a plan
// picks its algorithm once and keeps it with its workspace size: by timing cuDNN's candidates on
// the call's own buffers (cudnnFind*AlgorithmEx, the fastest that keeps to the requested math),
// or, under set_deterministic or with VQ_CUDNN_BENCHMARK=0, from cuDNN's heuristics
// (cudnnGet*Algorithm_v7: the choice does not depend on timing noise): the top-ranked one, or
// under set_deterministic the top-ranked deterministic one. Workspaces come from the caching
// allocator. float32 uses CUDNN_FMA_MATH (no TF32) unless TF32 is allowed.
// Size letters: N batch, C in channels, O out channels, H W input, OH OW output, kH kW kernel.
#include <cudnn.h>
#include <fmt/format.h>

#include <array>
#include <climits>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "autograd/switches.h"
#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_settings.h"
#include "cuda/kernels.h"

namespace vq::cuda {

namespace {

// ---- RAII descriptors ----

template <class H, cudnnStatus_t (*Create)(H*), cudnnStatus_t (*Destroy)(H)>
class Descriptor {
 public:
  Descriptor() { VQ_CUDNN_CHECK(Create(&handle_)); }
  ~Descriptor() { Destroy(handle_); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  H get() const { return handle_; }

 private:
  H handle_ = nullptr;
};

using TensorDesc =
    Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc =
    Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc = Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
                            cudnnDestroyConvolutionDescriptor>;

// One handle for the process, created on first use (needs a GPU), never destroyed (see
// gemm_cublas.cpp).
cudnnHandle_t cudnn_handle() {
  static const cudnnHandle_t handle = [] {
    cudnnHandle_t h = nullptr;
    VQ_CUDNN_CHECK(cudnnCreate(&h));
    return h;
  }();
  return handle;
}

int to_int(int64_t v, const ConvShape& s) {
  VQ_CHECK(v <= INT_MAX,
           "conv2d on cuda: input [{}, {}, {}, {}] with weight [{}, {}, {}, {}] exceeds cuDNN's "
           "32-bit sizes",
           s.N, s.C, s.H, s.W, s.O, s.C, s.kH, s.kW);
  return static_cast<int>(v);
}

// ---- plans ----

template <class Algo>
struct Choice {
  Algo algo;
  cudnnMathType_t math;
  size_t workspace;
};

struct Plan {
  TensorDesc x, y;         // in the type cuDNN computes on (conv_dtype), NHWC if channels_last
  TensorDesc y_out, bias;  // the output and bias as the caller holds them, for the bias terms
  FilterDesc w;
  ConvDesc conv;
  cudnnMathType_t requested_math = CUDNN_DEFAULT_MATH;
  bool deterministic = false;  // only deterministic algorithms (where cuDNN has one)
  bool channels_last = false;  // x, y, w (and dy, dx, dw) in channels-last memory
  std::unique_ptr<Choice<cudnnConvolutionFwdAlgo_t>> forward;
  std::unique_ptr<Choice<cudnnConvolutionBwdDataAlgo_t>> backward_data;
  std::unique_ptr<Choice<cudnnConvolutionBwdFilterAlgo_t>> backward_filter;
};

struct PlanKey {
  std::array<int64_t, 13> dims;  // N C H W O kH kW sH sW pH pW dH dW
  DType dtype;
  bool tf32, deterministic, channels_last;
  bool operator==(const PlanKey&) const = default;
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    size_t h =
        static_cast<size_t>(k.dtype) * 8 + k.tf32 * 4 + k.deterministic * 2 + k.channels_last;
    for (int64_t d : k.dims) h = h * 1000003u ^ static_cast<size_t>(d);
    return h;
  }
};

cudnnDataType_t cudnn_type(DType dtype) {
  switch (dtype) {
    case DType::Float64: return CUDNN_DATA_DOUBLE;
    case DType::Float16: return CUDNN_DATA_HALF;
    case DType::BFloat16: return CUDNN_DATA_BFLOAT16;
    default: return CUDNN_DATA_FLOAT;
  }
}

// What cuDNN computes on: the tensors' own type, or under autocast the low precision.
DType conv_dtype(const ConvShape& s, DType tensors) {
  return tensors == DType::Float32 ? s.compute : tensors;
}

bool channels_last_enabled() {
  static const bool on = env_switch("VQ_CHANNELS_LAST", true);
  return on;
}
bool benchmark_enabled() {
  static const bool on = env_switch("VQ_CUDNN_BENCHMARK", true);
  return on;
}

// Low-precision convolutions run channels-last (tensor cores); float32 and float64 stay NCHW.
bool channels_last_for(DType dtype) {
  return (dtype == DType::BFloat16 || dtype == DType::Float16) && channels_last_enabled();
}

// Whether t [N, C, H, W] holds channels-last memory: strides [H*W*C, 1, W*C, C].
bool is_channels_last(const Tensor& t) {
  if (t.dim() != 4) return false;
  const int64_t C = t.size(1), H = t.size(2), W = t.size(3);
  return t.strides() == Shape{H * W * C, 1, W * C, C};
}

Tensor empty_in_layout(const Shape& shape, DType dtype, Device device, bool channels_last) {
  if (!channels_last) return Tensor::empty(shape, dtype, device);
  return Tensor::empty({shape[0], shape[2], shape[3], shape[1]}, dtype, device)
      .permute({0, 3, 1, 2});
}

// `dtype` is what cuDNN computes on, `tensors` what the caller's tensors hold.
std::unique_ptr<Plan> make_plan(const ConvShape& s, DType dtype, DType tensors, bool tf32,
                                bool channels_last) {
  const auto& o = s.options;
  const cudnnDataType_t type = cudnn_type(dtype), outer = cudnn_type(tensors);
  const cudnnTensorFormat_t format = channels_last ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
  // float64 accumulates in float64; everything else in float32.
  const cudnnDataType_t accumulate = dtype == DType::Float64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  auto plan = std::make_unique<Plan>();
  plan->channels_last = channels_last;
  VQ_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->x.get(), format, type, to_int(s.N, s),
                                            to_int(s.C, s), to_int(s.H, s), to_int(s.W, s)));
  VQ_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->y.get(), format, type, to_int(s.N, s),
                                            to_int(s.O, s), to_int(s.OH, s), to_int(s.OW, s)));
  VQ_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->y_out.get(), CUDNN_TENSOR_NCHW, outer,
                                            to_int(s.N, s), to_int(s.O, s), to_int(s.OH, s),
                                            to_int(s.OW, s)));
  VQ_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->bias.get(), CUDNN_TENSOR_NCHW, outer, 1,
                                            to_int(s.O, s), 1, 1));
  VQ_CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan->w.get(), type, format, to_int(s.O, s),
                                            to_int(s.C, s), to_int(s.kH, s), to_int(s.kW, s)));
  VQ_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
      plan->conv.get(), to_int(o.padding[0], s), to_int(o.padding[1], s), to_int(o.stride[0], s),
      to_int(o.stride[1], s), to_int(o.dilation[0], s), to_int(o.dilation[1], s),
      CUDNN_CROSS_CORRELATION, accumulate));
  // float32 without TF32 must stay on FMA kernels; DEFAULT would allow TF32 on Ampere and newer.
  // The low precisions are there for the tensor cores.
  plan->requested_math = type == CUDNN_DATA_HALF || type == CUDNN_DATA_BFLOAT16
                             ? CUDNN_TENSOR_OP_MATH
                         : (type == CUDNN_DATA_FLOAT && !tf32) ? CUDNN_FMA_MATH
                                                               : CUDNN_DEFAULT_MATH;
  VQ_CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv.get(), plan->requested_math));
  // The op computed OH, OW with PyTorch's formula; cuDNN must agree or the buffers are wrong.
  int n = 0, c = 0, h = 0, w = 0;
  VQ_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(plan->conv.get(), plan->x.get(),
                                                       plan->w.get(), &n, &c, &h, &w));
  VQ_CHECK(n == s.N && c == s.O && h == s.OH && w == s.OW,
           "conv2d on cuda: cuDNN computes output [{}, {}, {}, {}] but the op expects [{}, {}, {}, "
           "{}]",
           n, c, h, w, s.N, s.O, s.OH, s.OW);
  return plan;
}

// The most workspace an algorithm may use while cuDNN times the candidates.
constexpr size_t kMaxBenchmarkWorkspace = size_t{512} << 20;

// The math an algorithm runs in: without TF32 the FMA kernels whatever the heuristic reports.
cudnnMathType_t math_for(const Plan& plan, cudnnMathType_t reported) {
  return plan.requested_math == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : reported;
}

// cuDNN times its candidates on the call's own buffers (find: cudnnFind*AlgorithmEx), with a
// workspace as large as the largest a heuristic candidate asks for (up to the cap above); the
// fastest that succeeded and keeps to the requested math wins. nullptr where the timing fails or
// none qualifies: the heuristics decide then.
template <class Algo, class Perf, class GetAlgos, class GetWorkspace, class Find>
std::unique_ptr<Choice<Algo>> fastest(Plan& plan, GetAlgos& get_algos, GetWorkspace& get_workspace,
                                      Find& find) {
  std::vector<Perf> perf(32);
  int returned = 0;
  if (get_algos(static_cast<int>(perf.size()), &returned, perf.data()) != CUDNN_STATUS_SUCCESS) {
    return nullptr;
  }
  size_t most = 0;
  for (int i = 0; i < returned; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    VQ_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv.get(), math_for(plan, perf[i].mathType)));
    size_t bytes = 0;
    if (get_workspace(perf[i].algo, &bytes) == CUDNN_STATUS_SUCCESS &&
        bytes <= kMaxBenchmarkWorkspace) {
      most = std::max(most, bytes);
    }
  }
  VQ_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv.get(), plan.requested_math));
  std::unique_ptr<DeviceBuffer> workspace;
  try {
    workspace = std::make_unique<DeviceBuffer>(most);
  } catch (const Error&) {
    return nullptr;  // no room to time the hungriest candidates: the heuristics decide
  }
  std::vector<Perf> timed(32);
  int count = 0;
  if (find(static_cast<int>(timed.size()), &count, timed.data(), workspace->get(), most) !=
      CUDNN_STATUS_SUCCESS) {
    return nullptr;
  }
  for (int i = 0; i < count; ++i) {  // fastest first
    const Perf& p = timed[i];
    if (p.status != CUDNN_STATUS_SUCCESS || p.memory > most) continue;
    if (plan.requested_math == CUDNN_FMA_MATH && p.mathType != CUDNN_FMA_MATH) continue;
    return std::make_unique<Choice<Algo>>(Choice<Algo>{p.algo, p.mathType, p.memory});
  }
  return nullptr;
}

// Without set_deterministic (and unless VQ_CUDNN_BENCHMARK=0) the fastest by timing. Otherwise,
// or where timing gives nothing, the first algorithm of cuDNN's ranked heuristic list that is
// supported for this shape, keeps to the requested math (no TF32 unless allowed) and reports its
// workspace size. A deterministic plan takes the first deterministic one, so that a run repeats
// exactly, and falls back to any where cuDNN has none for the shape.
template <class Algo, class Perf, class GetAlgos, class GetWorkspace, class Find>
std::unique_ptr<Choice<Algo>> choose(Plan& plan, const char* direction, GetAlgos&& get_algos,
                                     GetWorkspace&& get_workspace, Find&& find) {
  // Ask with the requested math type: another direction may have switched the descriptor.
  VQ_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv.get(), plan.requested_math));
  if (!plan.deterministic && benchmark_enabled()) {
    if (auto timed = fastest<Algo, Perf>(plan, get_algos, get_workspace, find)) return timed;
    VQ_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv.get(), plan.requested_math));
  }
  std::vector<Perf> perf(32);
  int returned = 0;
  VQ_CUDNN_CHECK(get_algos(static_cast<int>(perf.size()), &returned, perf.data()));
  for (int pass = plan.deterministic ? 0 : 1; pass < 2; ++pass) {
    for (int i = 0; i < returned; ++i) {
      const Perf& p = perf[i];
      if (p.status != CUDNN_STATUS_SUCCESS) continue;
      if (pass == 0 && p.determinism != CUDNN_DETERMINISTIC) continue;
      // An algorithm with no FMA kernel fails the workspace query below and is skipped.
      const cudnnMathType_t math = math_for(plan, p.mathType);
      VQ_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv.get(), math));
      size_t workspace = 0;
      if (get_workspace(p.algo, &workspace) != CUDNN_STATUS_SUCCESS) continue;
      return std::make_unique<Choice<Algo>>(Choice<Algo>{p.algo, math, workspace});
    }
  }
  throw Error(fmt::format(
      "conv2d on cuda: cuDNN offers no usable {} algorithm for this shape ({} candidates{})",
      direction, returned, plan.requested_math == CUDNN_FMA_MATH ? ", float32 without TF32" : ""));
}

// Plans are looked up and used under one lock: the descriptors' math type is switched per call.
std::mutex& conv_mutex() {
  static std::mutex mutex;
  return mutex;
}

Plan& plan_for(const ConvShape& s, DType tensors) {
  // Never destroyed, like the handle: descriptors must not outlive cuDNN at exit.
  static auto& plans = *new std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash>();
  const auto& o = s.options;
  const bool tf32 = allow_tf32();
  const DType dtype = conv_dtype(s, tensors);  // the tensors' type follows from it
  const PlanKey key{{s.N, s.C, s.H, s.W, s.O, s.kH, s.kW, o.stride[0], o.stride[1], o.padding[0],
                     o.padding[1], o.dilation[0], o.dilation[1]},
                    dtype,
                    tf32,
                    deterministic(),
                    channels_last_for(dtype)};
  auto it = plans.find(key);
  if (it == plans.end()) {
    it = plans.emplace(key, make_plan(s, dtype, tensors, tf32, key.channels_last)).first;
    it->second->deterministic = key.deterministic;
  }
  return *it->second;
}

// alpha = 1, beta = 0 (or 1 to accumulate) in the precision cuDNN expects for the data type.
struct Scalars {
  float f[2] = {1.0f, 0.0f};
  double d[2] = {1.0, 0.0};
  bool is_double;
  explicit Scalars(DType dtype) : is_double(dtype == DType::Float64) {}
  const void* one() const { return is_double ? static_cast<const void*>(&d[0]) : &f[0]; }
  const void* zero() const { return is_double ? static_cast<const void*>(&d[1]) : &f[1]; }
};

// An input (x, w or dy) holds float32 or float64, or already the low precision it computes in;
// `out` (y, dx or dw) holds the caller's type: float32 under autocast.
void check_dtypes(const ConvShape& s, const Tensor& in, const Tensor& out) {
  VQ_CHECK(out.dtype() == DType::Float32 || out.dtype() == DType::Float64,
           "conv2d on cuda: unsupported dtype {}", dtype_name(out.dtype()));
  VQ_CHECK(s.compute == out.dtype() || out.dtype() == DType::Float32,
           "conv2d on cuda: {} tensors cannot compute in {}", dtype_name(out.dtype()),
           dtype_name(s.compute));
  VQ_CHECK(in.dtype() == out.dtype() || in.dtype() == s.compute,
           "conv2d on cuda: a {} operand for a {} result computed in {}", dtype_name(in.dtype()),
           dtype_name(out.dtype()), dtype_name(s.compute));
}

// The operand as cuDNN takes it (the plan's dtype and layout): the tensor itself, or a copy
// converted to the low precision (round to nearest even) and laid out channels-last.
Tensor operand(const Tensor& t, DType dtype, bool channels_last) {
  if (t.dtype() == dtype && (channels_last ? is_channels_last(t) : t.is_contiguous())) return t;
  Tensor copy = empty_in_layout(t.shape(), dtype, t.device(), channels_last);
  backend_for(t).copy(t, copy);
  return copy;
}

// Where cuDNN writes a result that the caller holds in `out` (contiguous): `out` itself, or a
// low-precision buffer in the plan's layout that finish() converts into `out`.
struct Result {
  Tensor out, buffer;
  Result(const Tensor& o, DType dtype, bool channels_last)
      : out(o),
        buffer(o.dtype() == dtype && !channels_last
                   ? o
                   : empty_in_layout(o.shape(), dtype, o.device(), channels_last)) {}
  void* data() const { return buffer.raw_data(); }
  void finish() const {
    if (buffer.raw_data() != out.raw_data()) backend_for(out).copy(buffer, out);
  }
};

}  // namespace

bool CudaBackend::wants_channels_last_operands() const { return channels_last_enabled(); }

void CudaBackend::conv2d_forward(const ConvShape& s, const Tensor& x, const Tensor& w,
                                 const Tensor& bias, const Tensor& residual, const Tensor& y) {
  check_dtypes(s, x, y);
  check_dtypes(s, w, y);
  std::lock_guard<std::mutex> lock(conv_mutex());
  cudnnHandle_t h = cudnn_handle();
  Plan& p = plan_for(s, y.dtype());
  const DType dtype = conv_dtype(s, y.dtype());
  const Tensor xl = operand(x, dtype, p.channels_last), wl = operand(w, dtype, p.channels_last);
  const Result out(y, dtype, p.channels_last);
  if (!p.forward) {
    p.forward = choose<cudnnConvolutionFwdAlgo_t, cudnnConvolutionFwdAlgoPerf_t>(
        p, "forward",
        [&](int n, int* got, cudnnConvolutionFwdAlgoPerf_t* perf) {
          return cudnnGetConvolutionForwardAlgorithm_v7(h, p.x.get(), p.w.get(), p.conv.get(),
                                                        p.y.get(), n, got, perf);
        },
        [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
          return cudnnGetConvolutionForwardWorkspaceSize(h, p.x.get(), p.w.get(), p.conv.get(),
                                                         p.y.get(), algo, bytes);
        },
        [&](int n, int* got, cudnnConvolutionFwdAlgoPerf_t* perf, void* ws, size_t ws_bytes) {
          return cudnnFindConvolutionForwardAlgorithmEx(h, p.x.get(), xl.raw_data(), p.w.get(),
                                                        wl.raw_data(), p.conv.get(), p.y.get(),
                                                        out.data(), n, got, perf, ws, ws_bytes);
        });
  }
  const Scalars k(y.dtype());
  DeviceBuffer workspace(p.forward->workspace);
  VQ_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv.get(), p.forward->math));
  VQ_CUDNN_CHECK(cudnnConvolutionForward(
      h, k.one(), p.x.get(), xl.raw_data(), p.w.get(), wl.raw_data(), p.conv.get(), p.forward->algo,
      workspace.get(), workspace.size(), k.zero(), p.y.get(), out.data()));
  // A channels-last low-precision result reaches y with its bias and residual in one pass.
  if (p.channels_last && y.dtype() == DType::Float32 &&
      launch_channels_last_to_nchw(
          y.data<float>(), out.data(), dtype, bias.defined() ? bias.data<float>() : nullptr,
          residual.defined() ? residual.data<float>() : nullptr, s.N, s.O, s.OH * s.OW)) {
    return;
  }
  out.finish();
  if (bias.defined()) {
    // y += bias, broadcast over N, OH, OW
    VQ_CUDNN_CHECK(cudnnAddTensor(h, k.one(), p.bias.get(), bias.raw_data(), k.one(), p.y_out.get(),
                                  y.raw_data()));
  }
  if (residual.defined()) {
    // y += residual, elementwise
    VQ_CUDNN_CHECK(cudnnAddTensor(h, k.one(), p.y_out.get(), residual.raw_data(), k.one(),
                                  p.y_out.get(), y.raw_data()));
  }
}

void CudaBackend::conv2d_backward_data(const ConvShape& s, const Tensor& dy, const Tensor& w,
                                       const Tensor& dx) {
  check_dtypes(s, dy, dx);
  check_dtypes(s, w, dx);
  std::lock_guard<std::mutex> lock(conv_mutex());
  cudnnHandle_t h = cudnn_handle();
  Plan& p = plan_for(s, dx.dtype());
  const DType dtype = conv_dtype(s, dx.dtype());
  const Tensor wl = operand(w, dtype, p.channels_last), dyl = operand(dy, dtype, p.channels_last);
  const Result out(dx, dtype, p.channels_last);
  if (!p.backward_data) {
    p.backward_data = choose<cudnnConvolutionBwdDataAlgo_t, cudnnConvolutionBwdDataAlgoPerf_t>(
        p, "backward-data",
        [&](int n, int* got, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
          return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w.get(), p.y.get(), p.conv.get(),
                                                             p.x.get(), n, got, perf);
        },
        [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
          return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w.get(), p.y.get(), p.conv.get(),
                                                              p.x.get(), algo, bytes);
        },
        [&](int n, int* got, cudnnConvolutionBwdDataAlgoPerf_t* perf, void* ws, size_t ws_bytes) {
          return cudnnFindConvolutionBackwardDataAlgorithmEx(
              h, p.w.get(), wl.raw_data(), p.y.get(), dyl.raw_data(), p.conv.get(), p.x.get(),
              out.data(), n, got, perf, ws, ws_bytes);
        });
  }
  const Scalars k(dx.dtype());
  DeviceBuffer workspace(p.backward_data->workspace);
  VQ_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv.get(), p.backward_data->math));
  VQ_CUDNN_CHECK(cudnnConvolutionBackwardData(
      h, k.one(), p.w.get(), wl.raw_data(), p.y.get(), dyl.raw_data(), p.conv.get(),
      p.backward_data->algo, workspace.get(), workspace.size(), k.zero(), p.x.get(), out.data()));
  out.finish();
}

void CudaBackend::conv2d_backward_bias(const ConvShape& s, const Tensor& dy, const Tensor& dbias) {
  check_dtypes(s, dy, dbias);
  VQ_CHECK(dy.dtype() == dbias.dtype(), "conv2d on cuda: the bias gradient needs the {} dy, got {}",
           dtype_name(dbias.dtype()), dtype_name(dy.dtype()));
  std::lock_guard<std::mutex> lock(conv_mutex());
  Plan& p = plan_for(s, dbias.dtype());
  const Scalars k(dbias.dtype());
  // dbias[o] = sum of dy over N, OH, OW, through the caller's (float32) descriptors
  VQ_CUDNN_CHECK(cudnnConvolutionBackwardBias(cudnn_handle(), k.one(), p.y_out.get(), dy.raw_data(),
                                              k.zero(), p.bias.get(), dbias.raw_data()));
}

void CudaBackend::conv2d_backward_weight(const ConvShape& s, const Tensor& dy, const Tensor& x,
                                         const Tensor& dw, const Tensor& dbias) {
  check_dtypes(s, dy, dw);
  check_dtypes(s, x, dw);
  // The bias terms read dy through the caller's (float32) descriptor.
  VQ_CHECK(!dbias.defined() || dy.dtype() == dw.dtype(),
           "conv2d on cuda: the bias gradient needs the {} dy, got {}", dtype_name(dw.dtype()),
           dtype_name(dy.dtype()));
  std::lock_guard<std::mutex> lock(conv_mutex());
  cudnnHandle_t h = cudnn_handle();
  Plan& p = plan_for(s, dw.dtype());
  const DType dtype = conv_dtype(s, dw.dtype());
  const Tensor xl = operand(x, dtype, p.channels_last), dyl = operand(dy, dtype, p.channels_last);
  const Result out(dw, dtype, p.channels_last);
  if (!p.backward_filter) {
    p.backward_filter =
        choose<cudnnConvolutionBwdFilterAlgo_t, cudnnConvolutionBwdFilterAlgoPerf_t>(
            p, "backward-filter",
            [&](int n, int* got, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
              return cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                  h, p.x.get(), p.y.get(), p.conv.get(), p.w.get(), n, got, perf);
            },
            [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
              return cudnnGetConvolutionBackwardFilterWorkspaceSize(
                  h, p.x.get(), p.y.get(), p.conv.get(), p.w.get(), algo, bytes);
            },
            [&](int n, int* got, cudnnConvolutionBwdFilterAlgoPerf_t* perf, void* ws,
                size_t ws_bytes) {
              return cudnnFindConvolutionBackwardFilterAlgorithmEx(
                  h, p.x.get(), xl.raw_data(), p.y.get(), dyl.raw_data(), p.conv.get(), p.w.get(),
                  out.data(), n, got, perf, ws, ws_bytes);
            });
  }
  const Scalars k(dw.dtype());
  DeviceBuffer workspace(p.backward_filter->workspace);
  VQ_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv.get(), p.backward_filter->math));
  // dw is overwritten (beta = 0), as the interface asks.
  VQ_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
      h, k.one(), p.x.get(), xl.raw_data(), p.y.get(), dyl.raw_data(), p.conv.get(),
      p.backward_filter->algo, workspace.get(), workspace.size(), k.zero(), p.w.get(), out.data()));
  out.finish();
  if (dbias.defined()) {
    // dbias[o] = sum of dy over N, OH, OW, from the caller's dy
    VQ_CUDNN_CHECK(cudnnConvolutionBackwardBias(h, k.one(), p.y_out.get(), dy.raw_data(), k.zero(),
                                                p.bias.get(), dbias.raw_data()));
  }
}

}  // namespace vq::cuda
