// conv2d on the CPU. float32 runs on oneDNN (the library PyTorch itself uses for CPU
// convolutions): each direction (forward, backward-data, backward-weights) gets a primitive
// planned once per shape and thread count and cached. oneDNN picks its own (blocked) memory
// layouts; our NCHW/OIHW tensors are reordered into them and back around each call. Under
// autocast (s.compute == BFloat16) the primitives take bfloat16 inputs and produce float32: the
// reorders into the blocked layouts convert to bfloat16 on the way, so the cast costs no extra
// pass, and the products accumulate in float32 (oneDNN's AVX512_BF16 kernels, vdpbf16ps).
// float64 (gradchecks) and shapes oneDNN cannot take (negative right padding) use im2col + GEMM,
// which is also the reference the oneDNN path is tested against.
// Two oneDNN versions build this file: 3.x (scripts/setup.sh installs Intel's 3.2 from PyPI; its
// bfloat16 backward passes are brgemm kernels, 14% off the mixed-precision step) and Debian's 2.6
// (the GPU carry and the sanitizer builds). 3.x dropped the operation descriptors, so the three
// primitive descriptors and two accessors below are written once per version.
// Size letters: N batch, C in channels, O out channels, H W input, OH OW output, kH kW kernel.
#include <oneapi/dnnl/dnnl.hpp>

#include <mutex>
#include <unordered_map>

#include "autograd/cpu/cpu_backend.h"
#include "autograd/cpu/loops.h"

namespace vq::cpu {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// ---- oneDNN plans ----

enum class Direction { Forward, BackwardData, BackwardWeights };

struct PlanKey {
  Direction dir;
  bool bf16;
  std::array<int64_t, 13> dims;  // N C H W O kH kW sH sW pH pW dH dW
  bool bias;
  int threads;
  bool operator==(const PlanKey&) const = default;
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    size_t h = static_cast<size_t>(k.dir) * 31 + k.bias * 7 + k.bf16 * 3 + k.threads;
    for (int64_t d : k.dims) h = h * 1000003u ^ static_cast<size_t>(d);
    return h;
  }
};

// One argument of a primitive: the layout we hold (plain NCHW/OIHW/x) and the one the primitive
// wants; reorders between them when they differ.
struct PlanArg {
  int id;
  memory::desc plain, want;
  bool output;
  dnnl::reorder convert;  // plain -> want (inputs) or want -> plain (outputs)
};

struct Plan {
  dnnl::primitive primitive;
  std::vector<PlanArg> args;
  memory::desc scratchpad;  // the primitive's temporary memory, which we hand out from our cache
};

PlanArg make_arg(int id, const memory::desc& plain, const memory::desc& want, bool output) {
  PlanArg arg{id, plain, want, output, {}};
  if (plain != want) {
    arg.convert =
        output ? dnnl::reorder(dnnl::reorder::primitive_desc(engine(), want, engine(), plain))
               : dnnl::reorder(dnnl::reorder::primitive_desc(engine(), plain, engine(), want));
  }
  return arg;
}

struct Descs {
  memory::desc src, weights, bias, dst;
  memory::dims strides, dilates, pad_l, pad_r;
};

Descs descs_for(const ConvShape& s) {
  const auto& o = s.options;
  const auto f32 = memory::data_type::f32;
  Descs d;
  d.src = memory::desc({s.N, s.C, s.H, s.W}, f32, Tag::nchw);
  d.weights = memory::desc({s.O, s.C, s.kH, s.kW}, f32, Tag::oihw);
  d.bias = memory::desc({s.O}, f32, Tag::x);
  d.dst = memory::desc({s.N, s.O, s.OH, s.OW}, f32, Tag::nchw);
  d.strides = {o.stride[0], o.stride[1]};
  d.dilates = {o.dilation[0] - 1, o.dilation[1] - 1};  // oneDNN counts dilation from 0
  d.pad_l = {o.padding[0], o.padding[1]};
  d.pad_r = {(s.OH - 1) * o.stride[0] + (s.kH - 1) * o.dilation[0] + 1 - s.H - o.padding[0],
             (s.OW - 1) * o.stride[1] + (s.kW - 1) * o.dilation[1] + 1 - s.W - o.padding[1]};
  return d;
}

// The same dims in any layout the primitive prefers, of element type `type`.
memory::desc any_like(const memory::desc& md, memory::data_type type = memory::data_type::f32) {
#if DNNL_VERSION_MAJOR >= 3
  return memory::desc(md.get_dims(), type, Tag::any);
#else
  return memory::desc(md.dims(), type, Tag::any);
#endif
}

bool is_bf16(const memory::desc& md) {
#if DNNL_VERSION_MAJOR >= 3
  return md.get_data_type() == memory::data_type::bf16;
#else
  return md.data_type() == memory::data_type::bf16;
#endif
}

// oneDNN would allocate each primitive's scratchpad with fresh pages on every call (a page fault
// per 4 KiB); with the user mode we pass it memory from our caching allocator instead.
dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// `in`: the element type of the products' inputs (src, weights, diff_dst): f32, or bf16 under
// autocast; results (dst, diff_src, diff_weights, biases) are always f32.
dnnl::convolution_forward::primitive_desc forward_pd(const Descs& d, bool bias,
                                                     memory::data_type in) {
  const auto alg = dnnl::algorithm::convolution_direct;
  const memory::desc no_bias;
#if DNNL_VERSION_MAJOR >= 3
  return dnnl::convolution_forward::primitive_desc(
      engine(), dnnl::prop_kind::forward_training, alg, any_like(d.src, in),
      any_like(d.weights, in), bias ? d.bias : no_bias, any_like(d.dst), d.strides, d.dilates,
      d.pad_l, d.pad_r, user_scratchpad());
#else
  dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_training, alg, any_like(d.src, in),
                                       any_like(d.weights, in), bias ? d.bias : no_bias,
                                       any_like(d.dst), d.strides, d.dilates, d.pad_l, d.pad_r);
  return dnnl::convolution_forward::primitive_desc(desc, user_scratchpad(), engine());
#endif
}

Plan make_plan(const ConvShape& s, Direction dir, bool bias) {
  VQ_CHECK(s.compute == DType::Float32 || s.compute == DType::BFloat16,
           "conv2d on cpu: no {} kernels (oneDNN computes float32 or bfloat16 here)",
           dtype_name(s.compute));
  const Descs d = descs_for(s);
  const auto alg = dnnl::algorithm::convolution_direct;
  const auto in = s.compute == DType::BFloat16 ? memory::data_type::bf16 : memory::data_type::f32;
  const auto fwd = forward_pd(d, bias, in);
  Plan plan;
  switch (dir) {
    case Direction::Forward:
      plan.primitive = dnnl::convolution_forward(fwd);
      plan.scratchpad = fwd.scratchpad_desc();
      plan.args = {make_arg(DNNL_ARG_SRC, d.src, fwd.src_desc(), false),
                   make_arg(DNNL_ARG_WEIGHTS, d.weights, fwd.weights_desc(), false),
                   make_arg(DNNL_ARG_DST, d.dst, fwd.dst_desc(), true)};
      if (bias) plan.args.push_back(make_arg(DNNL_ARG_BIAS, d.bias, d.bias, false));
      break;
    case Direction::BackwardData: {
#if DNNL_VERSION_MAJOR >= 3
      dnnl::convolution_backward_data::primitive_desc pd(
          engine(), alg, any_like(d.src), any_like(d.weights, in), any_like(d.dst, in), d.strides,
          d.dilates, d.pad_l, d.pad_r, fwd, user_scratchpad());
#else
      dnnl::convolution_backward_data::desc desc(alg, any_like(d.src), any_like(d.weights, in),
                                                 any_like(d.dst, in), d.strides, d.dilates, d.pad_l,
                                                 d.pad_r);
      dnnl::convolution_backward_data::primitive_desc pd(desc, user_scratchpad(), engine(), fwd);
#endif
      plan.primitive = dnnl::convolution_backward_data(pd);
      plan.scratchpad = pd.scratchpad_desc();
      plan.args = {make_arg(DNNL_ARG_DIFF_DST, d.dst, pd.diff_dst_desc(), false),
                   make_arg(DNNL_ARG_WEIGHTS, d.weights, pd.weights_desc(), false),
                   make_arg(DNNL_ARG_DIFF_SRC, d.src, pd.diff_src_desc(), true)};
      break;
    }
    case Direction::BackwardWeights: {
      const memory::desc no_bias;
#if DNNL_VERSION_MAJOR >= 3
      dnnl::convolution_backward_weights::primitive_desc pd(
          engine(), alg, any_like(d.src, in), any_like(d.weights), bias ? d.bias : no_bias,
          any_like(d.dst, in), d.strides, d.dilates, d.pad_l, d.pad_r, fwd, user_scratchpad());
#else
      dnnl::convolution_backward_weights::desc desc(alg, any_like(d.src, in), any_like(d.weights),
                                                    bias ? d.bias : no_bias, any_like(d.dst, in),
                                                    d.strides, d.dilates, d.pad_l, d.pad_r);
      dnnl::convolution_backward_weights::primitive_desc pd(desc, user_scratchpad(), engine(), fwd);
#endif
      plan.primitive = dnnl::convolution_backward_weights(pd);
      plan.scratchpad = pd.scratchpad_desc();
      plan.args = {make_arg(DNNL_ARG_SRC, d.src, pd.src_desc(), false),
                   make_arg(DNNL_ARG_DIFF_DST, d.dst, pd.diff_dst_desc(), false),
                   make_arg(DNNL_ARG_DIFF_WEIGHTS, d.weights, pd.diff_weights_desc(), true)};
      if (bias) plan.args.push_back(make_arg(DNNL_ARG_DIFF_BIAS, d.bias, d.bias, true));
      break;
    }
  }
  return plan;
}

const Plan& plan_for(const ConvShape& s, Direction dir, bool bias) {
  static std::mutex mutex;
  static std::unordered_map<PlanKey, Plan, PlanKeyHash> cache;
  const auto& o = s.options;
  const PlanKey key{dir,
                    s.compute == DType::BFloat16,
                    {s.N, s.C, s.H, s.W, s.O, s.kH, s.kW, o.stride[0], o.stride[1], o.padding[0],
                     o.padding[1], o.dilation[0], o.dilation[1]},
                    bias,
                    omp_get_max_threads()};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it == cache.end()) {
    try {
      it = cache.emplace(key, make_plan(s, dir, bias)).first;
    } catch (const dnnl::error& e) {
      throw Error(fmt::format(
          "conv2d: oneDNN could not plan input [{}, {}, {}, {}] weight [{}, {}, {}, {}] in {}: {}",
          s.N, s.C, s.H, s.W, s.O, s.C, s.kH, s.kW, dtype_name(s.compute), e.what()));
    }
  }
  return it->second;
}

// ---- converted inputs, reused between calls ----

// A training step converts some inputs twice: a convolution's input x for its forward and again
// for its backward-weights, and the incoming gradient dy for backward-data and again for
// backward-weights (under autocast these conversions, float32 NCHW into oneDNN's bfloat16
// channels-last layout, took ~20% of the step's CPU samples: bench/profile_step.py). Evaluation
// converts the same weights for every batch. So a bfloat16 copy is remembered against the
// tensor's storage: weakly, so that an entry dies with its tensor (it is dropped at the next
// lookup), and with the storage's version, so that a tensor written in place in between (a
// weight after Adam's step) is converted afresh.
class ConvertedInputs {
 public:
  // `t` (laid out as `plain`) in the layout `want`: remembered, or converted now. Only bfloat16
  // conversions are remembered: a float32 copy in another layout is as large as the tensor, and
  // keeping those until backward cost more than it saved (measured: the float32 step got ~20%
  // slower, the bfloat16 step ~8% faster).
  Tensor get(const Tensor& t, const PlanArg& arg, dnnl::stream& stream) {
    if (!is_bf16(arg.want)) return convert(t, arg, stream);
    std::lock_guard<std::mutex> lock(mutex_);
    std::erase_if(entries_, [](const Entry& e) { return e.storage.expired(); });
    const uint64_t version = t.storage()->version();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->storage.lock() != t.storage() || it->data != t.raw_data() || it->want != arg.want)
        continue;
      if (it->version == version) return it->converted;
      entries_.erase(it);  // written since: convert again
      break;
    }
    Tensor converted = convert(t, arg, stream);
    entries_.push_back({t.storage(), t.raw_data(), version, arg.want, converted});
    return converted;
  }

 private:
  static Tensor convert(const Tensor& t, const PlanArg& arg, dnnl::stream& stream) {
    Tensor converted = Tensor::empty({static_cast<int64_t>(arg.want.get_size())}, DType::UInt8);
    memory plain(arg.plain, engine(), t.raw_data());
    memory staged(arg.want, engine(), converted.raw_data());
    arg.convert.execute(stream, plain, staged);
    return converted;
  }

  struct Entry {
    std::weak_ptr<Storage> storage;
    const void* data;  // where the tensor starts in it
    uint64_t version;
    memory::desc want;
    Tensor converted;
  };
  std::mutex mutex_;
  std::vector<Entry> entries_;
};

ConvertedInputs& converted_inputs() {
  // Never destroyed: its tensors would go back to the CPU allocator's block cache, which static
  // destruction may already have torn down.
  static auto& cache = *new ConvertedInputs();
  return cache;
}

// Runs a plan on our plain tensors: inputs reordered into the primitive's layouts (or their
// remembered copies used), outputs reordered back.
void execute(const Plan& plan, const std::unordered_map<int, const Tensor*>& tensors) {
  dnnl::stream stream(engine());
  std::unordered_map<int, memory> exec_args;
  std::vector<std::pair<const PlanArg*, std::pair<memory, memory>>> outputs;
  std::vector<Tensor> scratch;  // keeps reorder targets alive (from our cached allocator)
  for (const PlanArg& arg : plan.args) {
    const Tensor& t = *tensors.at(arg.id);
    memory plain(arg.plain, engine(), t.raw_data());
    if (arg.plain == arg.want) {
      exec_args.emplace(arg.id, plain);
      continue;
    }
    scratch.push_back(arg.output
                          ? Tensor::empty({static_cast<int64_t>(arg.want.get_size())}, DType::UInt8)
                          : converted_inputs().get(t, arg, stream));
    memory staged(arg.want, engine(), scratch.back().raw_data());
    if (arg.output) outputs.push_back({&arg, {staged, plain}});
    exec_args.emplace(arg.id, staged);
  }
  scratch.push_back(
      Tensor::empty({static_cast<int64_t>(plan.scratchpad.get_size())}, DType::UInt8));
  exec_args.emplace(DNNL_ARG_SCRATCHPAD,
                    memory(plan.scratchpad, engine(), scratch.back().raw_data()));
  plan.primitive.execute(stream, exec_args);
  for (auto& [arg, mems] : outputs) arg->convert.execute(stream, mems.first, mems.second);
  stream.wait();
}

bool onednn_can_run(const ConvShape& s) {
  const Descs d = descs_for(s);
  return d.pad_r[0] >= 0 && d.pad_r[1] >= 0;
}

// ---- im2col reference ----

// col [C*kH*kW, OH*OW] from one image x [C, H, W]; zero outside the padded input.
template <class T>
void im2col(const ConvShape& s, const T* x, T* col) {
  const auto& o = s.options;
  parallel_for(s.C * s.kH * s.kW, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r / (s.kH * s.kW), i = (r / s.kW) % s.kH, j = r % s.kW;
      T* out = col + r * s.OH * s.OW;
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        const int64_t h = oh * o.stride[0] - o.padding[0] + i * o.dilation[0];
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const int64_t w = ow * o.stride[1] - o.padding[1] + j * o.dilation[1];
          const bool inside = h >= 0 && h < s.H && w >= 0 && w < s.W;
          out[oh * s.OW + ow] = inside ? x[(c * s.H + h) * s.W + w] : T(0);
        }
      }
    }
  });
}

// dx [C, H, W] += col2im(col); serial over rows of one channel so writes never race.
template <class T>
void col2im(const ConvShape& s, const T* col, T* dx) {
  const auto& o = s.options;
  parallel_for(s.C, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t i = 0; i < s.kH; ++i) {
        for (int64_t j = 0; j < s.kW; ++j) {
          const T* in = col + ((c * s.kH + i) * s.kW + j) * s.OH * s.OW;
          for (int64_t oh = 0; oh < s.OH; ++oh) {
            const int64_t h = oh * o.stride[0] - o.padding[0] + i * o.dilation[0];
            if (h < 0 || h >= s.H) continue;
            for (int64_t ow = 0; ow < s.OW; ++ow) {
              const int64_t w = ow * o.stride[1] - o.padding[1] + j * o.dilation[1];
              if (w >= 0 && w < s.W) dx[(c * s.H + h) * s.W + w] += in[oh * s.OW + ow];
            }
          }
        }
      }
    }
  });
}

template <class T>
Backend::GemmArgs gemm_args(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double beta) {
  Backend::GemmArgs g;
  g.trans_a = ta;
  g.trans_b = tb;
  g.M = M;
  g.N = N;
  g.K = K;
  g.lda = ta ? M : K;
  g.ldb = tb ? K : N;
  g.ldc = N;
  g.beta = beta;
  return g;
}

}  // namespace

std::string CpuBackend::why_no_low_precision(DType low) {
  if (low != DType::BFloat16) {
    return fmt::format("{} products on the CPU: oneDNN has no such kernels here; use bfloat16",
                       dtype_name(low));
  }
  // oneDNN builds emulated bfloat16 kernels on plain AVX-512, slower than float32: only the
  // native instructions count. The ISA values are bit sets, so every ISA that contains
  // AVX512_BF16 (AMX, AVX512_FP16, ...) passes. ONEDNN_MAX_CPU_ISA lowers what oneDNN reports
  // (used by a test).
  const auto isa = dnnl::get_effective_cpu_isa();
  const auto bf16_bits = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  if ((static_cast<unsigned>(isa) & bf16_bits) == bf16_bits) return {};
  return "this CPU has no AVX512_BF16 instructions for oneDNN (or ONEDNN_MAX_CPU_ISA is below "
         "AVX512_CORE_BF16): bfloat16 would be emulated, slower than float32";
}

namespace {

// y += residual (same shape and dtype, both contiguous), after the convolution wrote y.
void add_residual(const Tensor& residual, const Tensor& y) {
  if (!residual.defined()) return;
  dispatch_floating(y.dtype(), "conv2d residual", [&](auto tag) {
    using T = decltype(tag);
    const T* r = residual.data<T>();
    T* out = y.data<T>();
    const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) out[i] += r[i];
  });
}

}  // namespace

void CpuBackend::conv2d_forward(const ConvShape& s, const Tensor& x, const Tensor& w,
                                const Tensor& bias, const Tensor& residual, const Tensor& y) {
  if (x.dtype() == DType::Float32 && onednn_can_run(s)) {
    std::unordered_map<int, const Tensor*> tensors{
        {DNNL_ARG_SRC, &x}, {DNNL_ARG_WEIGHTS, &w}, {DNNL_ARG_DST, &y}};
    if (bias.defined()) tensors[DNNL_ARG_BIAS] = &bias;
    execute(plan_for(s, Direction::Forward, bias.defined()), tensors);
    add_residual(residual, y);
    return;
  }
  dispatch_floating(x.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    const int64_t P = s.OH * s.OW, CK = s.C * s.kH * s.kW;
    Tensor col = Tensor::empty({CK, P}, x.dtype());
    for (int64_t n = 0; n < s.N; ++n) {
      im2col(s, x.data<T>() + n * s.C * s.H * s.W, col.data<T>());
      T* yn = y.data<T>() + n * s.O * P;
      // y[n] = W [O, CK] @ col [CK, P] (+ bias per output channel)
      gemm(gemm_args<T>(false, false, s.O, P, CK, 0.0), w, col,
           make_view(y, {s.O, P}, {P, 1}, y.offset() + n * s.O * P));
      if (bias.defined()) {
        const T* b = bias.data<T>();
        for (int64_t oc = 0; oc < s.O; ++oc) {
          for (int64_t p = 0; p < P; ++p) yn[oc * P + p] += b[oc];
        }
      }
    }
  });
  add_residual(residual, y);
}

void CpuBackend::conv2d_backward_data(const ConvShape& s, const Tensor& dy, const Tensor& w,
                                      const Tensor& dx) {
  if (dy.dtype() == DType::Float32 && onednn_can_run(s)) {
    execute(plan_for(s, Direction::BackwardData, false),
            {{DNNL_ARG_DIFF_DST, &dy}, {DNNL_ARG_WEIGHTS, &w}, {DNNL_ARG_DIFF_SRC, &dx}});
    return;
  }
  dispatch_floating(dy.dtype(), "conv2d backward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t P = s.OH * s.OW, CK = s.C * s.kH * s.kW;
    Tensor col = Tensor::empty({CK, P}, dy.dtype());
    fill(dx, 0.0);
    for (int64_t n = 0; n < s.N; ++n) {
      // col = W^T [CK, O] @ dy[n] [O, P], then scattered back onto the image
      gemm(gemm_args<T>(true, false, CK, P, s.O, 0.0), w,
           make_view(dy, {s.O, P}, {P, 1}, dy.offset() + n * s.O * P), col);
      col2im(s, col.data<T>(), dx.data<T>() + n * s.C * s.H * s.W);
    }
  });
}

namespace {

// dbias[o] = the sum of dy [N, O, P] over N and P, in double.
template <class T>
void bias_grad(const ConvShape& s, const Tensor& dy, const Tensor& dbias) {
  const int64_t P = s.OH * s.OW;
  T* db = dbias.data<T>();
  const T* g = dy.data<T>();
  for (int64_t oc = 0; oc < s.O; ++oc) {
    double acc = 0;
    for (int64_t n = 0; n < s.N; ++n) {
      for (int64_t p = 0; p < P; ++p) acc += g[(n * s.O + oc) * P + p];
    }
    db[oc] = static_cast<T>(acc);
  }
}

}  // namespace

void CpuBackend::conv2d_backward_bias(const ConvShape& s, const Tensor& dy, const Tensor& dbias) {
  dispatch_floating(dy.dtype(), "conv2d backward",
                    [&](auto tag) { bias_grad<decltype(tag)>(s, dy, dbias); });
}

void CpuBackend::conv2d_backward_weight(const ConvShape& s, const Tensor& dy, const Tensor& x,
                                        const Tensor& dw, const Tensor& dbias) {
  if (dy.dtype() == DType::Float32 && onednn_can_run(s)) {
    // Under autocast oneDNN would sum the rounded dy for the bias; like the CUDA backend, the
    // bias gradient sums the float32 dy itself (the CUDA tests hold both backends to that).
    const bool bias_in_onednn = dbias.defined() && s.compute == DType::Float32;
    std::unordered_map<int, const Tensor*> tensors{
        {DNNL_ARG_SRC, &x}, {DNNL_ARG_DIFF_DST, &dy}, {DNNL_ARG_DIFF_WEIGHTS, &dw}};
    if (bias_in_onednn) tensors[DNNL_ARG_DIFF_BIAS] = &dbias;
    execute(plan_for(s, Direction::BackwardWeights, bias_in_onednn), tensors);
    if (dbias.defined() && !bias_in_onednn) bias_grad<float>(s, dy, dbias);
    return;
  }
  dispatch_floating(dy.dtype(), "conv2d backward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t P = s.OH * s.OW, CK = s.C * s.kH * s.kW;
    Tensor col = Tensor::empty({CK, P}, dy.dtype());
    for (int64_t n = 0; n < s.N; ++n) {
      im2col(s, x.data<T>() + n * s.C * s.H * s.W, col.data<T>());
      // dW [O, CK] (+)= dy[n] [O, P] @ col^T [P, CK]
      gemm(gemm_args<T>(false, true, s.O, CK, P, n == 0 ? 0.0 : 1.0),
           make_view(dy, {s.O, P}, {P, 1}, dy.offset() + n * s.O * P), col, dw);
    }
    if (dbias.defined()) bias_grad<T>(s, dy, dbias);
  });
}

}  // namespace vq::cpu
