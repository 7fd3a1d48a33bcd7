// Fused Adam/AdamW update on the GPU: one pass over param, grad and both moments, one thread per
// element. The arithmetic is the CPU's (autograd/cpu/optim_cpu.cpp, PyTorch's torch.optim.Adam):
//   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// with the bias corrections computed once on the host in double. Size letters: n elements.
#include "cuda/launch.cuh"

namespace vq::cuda {

namespace {

template <class T>
__global__ void adam_kernel(T* p, const T* g, T* m, T* v, int64_t n, T step_size, T sqrt_bc2, T b1,
                            T b2, T eps, T wd, T decay, bool decoupled) {
  VQ_GRID_LOOP(i, n) {
    T gi = g[i];
    T pi = p[i];
    if (decoupled) {
      pi *= decay;  // AdamW: p *= 1 - lr * wd
    } else {
      gi += wd * pi;  // Adam: L2 penalty folded into the gradient
    }
    const T mi = b1 * m[i] + (T(1) - b1) * gi;
    const T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - step_size * mi / (std::sqrt(vi) / sqrt_bc2 + eps);
  }
}

}  // namespace

void launch_adam(DType dtype, void* param, const void* grad, void* exp_avg, void* exp_avg_sq,
                 int64_t n, const AdamArgs& a) {
  dispatch_floating(dtype, "adam_step", [&](auto tag) {
    using T = decltype(tag);
    launch_1d("adam_kernel", n, adam_kernel<T>, static_cast<T*>(param), static_cast<const T*>(grad),
              static_cast<T*>(exp_avg), static_cast<T*>(exp_avg_sq), n, static_cast<T>(a.step_size),
              static_cast<T>(a.sqrt_bc2), static_cast<T>(a.beta1), static_cast<T>(a.beta2),
              static_cast<T>(a.eps), static_cast<T>(a.weight_decay), static_cast<T>(a.decay),
              a.decoupled);
  });
}

}  // namespace vq::cuda
