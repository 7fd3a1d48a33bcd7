// Fused Adam/AdamW update on the GPU: one pass over param, grad and both moments, one thread per
// element. The arithmetic is the CPU's (autograd/cpu/optim_cpu.cpp, PyTorch's torch.optim.Adam):
//   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// with the bias corrections computed once on the host in double. Size letters: n elements.
// launch_adam_multi updates a model's parameters in a few launches (48 tensors each).
#include <algorithm>
#include <vector>

#include "cuda/launch.cuh"

namespace vq::cuda {

namespace {

// The hyperparameters in the parameters' type.
template <class T>
struct AdamConstants {
  T step_size, sqrt_bc2, b1, b2, eps, wd, decay;
  bool decoupled;
  explicit AdamConstants(const AdamArgs& a)
      : step_size(static_cast<T>(a.step_size)),
        sqrt_bc2(static_cast<T>(a.sqrt_bc2)),
        b1(static_cast<T>(a.beta1)),
        b2(static_cast<T>(a.beta2)),
        eps(static_cast<T>(a.eps)),
        wd(static_cast<T>(a.weight_decay)),
        decay(static_cast<T>(a.decay)),
        decoupled(a.decoupled) {}
};

template <class T>
__device__ __forceinline__ void adam_update(T* p, const T* g, T* m, T* v, int64_t i,
                                            const AdamConstants<T>& c) {
  T gi = g[i];
  T pi = p[i];
  if (c.decoupled) {
    pi *= c.decay;  // AdamW: p *= 1 - lr * wd
  } else {
    gi += c.wd * pi;  // Adam: L2 penalty folded into the gradient
  }
  const T mi = c.b1 * m[i] + (T(1) - c.b1) * gi;
  const T vi = c.b2 * v[i] + (T(1) - c.b2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  p[i] = pi - c.step_size * mi / (std::sqrt(vi) / c.sqrt_bc2 + c.eps);
}

template <class T>
__global__ void adam_kernel(T* p, const T* g, T* m, T* v, int64_t n, AdamConstants<T> c) {
  VQ_GRID_LOOP(i, n) adam_update(p, g, m, v, i, c);
}

// Up to kAdamTensors tensors per launch, their pointers passed by value (1.9 KB of the 4 KB of
// kernel parameters): blockIdx.y picks the tensor, the x blocks stride over its elements.
constexpr int kAdamTensors = 48;
template <class T>
struct AdamList {
  T* p[kAdamTensors];
  const T* g[kAdamTensors];
  T* m[kAdamTensors];
  T* v[kAdamTensors];
  int64_t n[kAdamTensors];
};

template <class T>
__global__ void adam_multi_kernel(AdamList<T> list, AdamConstants<T> c) {
  const int k = blockIdx.y;
  const int64_t n = list.n[k];
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    adam_update(list.p[k], list.g[k], list.m[k], list.v[k], i, c);
  }
}

}  // namespace

void launch_adam(DType dtype, void* param, const void* grad, void* exp_avg, void* exp_avg_sq,
                 int64_t n, const AdamArgs& a) {
  dispatch_floating(dtype, "adam_step", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("adam_kernel", n, adam_kernel<T>, static_cast<T*>(param), static_cast<const T*>(grad),
              static_cast<T*>(exp_avg), static_cast<T*>(exp_avg_sq), n, AdamConstants<T>(a));
  });
}

void launch_adam_multi(DType dtype, const std::vector<AdamPointers>& tensors, const AdamArgs& a) {
  dispatch_floating(dtype, "adam_step", [&](auto tag) {
    using T = decltype(tag);
    for (size_t first = 0; first < tensors.size(); first += kAdamTensors) {
      const int count = static_cast<int>(std::min<size_t>(kAdamTensors, tensors.size() - first));
      AdamList<T> list{};
      int64_t largest = 0;
      for (int k = 0; k < count; ++k) {
        const AdamPointers& t = tensors[first + k];
        list.p[k] = static_cast<T*>(t.param);
        list.g[k] = static_cast<const T*>(t.grad);
        list.m[k] = static_cast<T*>(t.exp_avg);
        list.v[k] = static_cast<T*>(t.exp_avg_sq);
        list.n[k] = t.n;
        largest = std::max(largest, t.n);
      }
      if (largest == 0) continue;
      // Enough x blocks for the largest tensor (at most 512, then striding); the blocks past a
      // smaller tensor's end return at once.
      const int64_t blocks = std::min<int64_t>((largest + kThreads - 1) / kThreads, 512);
      adam_multi_kernel<T>
          <<<dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(count)), kThreads>>>(
              list, AdamConstants<T>(a));
      VQ_CUDA_CHECK_LAUNCH("adam_multi_kernel");
    }
  });
}

}  // namespace vq::cuda
