// Fused Adam/AdamW update: one pass over param, grad and both moments. The arithmetic follows
// PyTorch's torch.optim.Adam (denominator sqrt(v)/sqrt(1 - beta2^t) + eps, step lr/(1 - beta1^t))
// so the two agree to float rounding.
#include <cmath>

#include "autograd/cpu/cpu_backend.h"
#include "autograd/cpu/loops.h"

namespace vq::cpu {

void CpuBackend::adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                           const Tensor& exp_avg_sq, const AdamStep& hp) {
  dispatch_floating(param.dtype(), "adam_step", [&](auto tag) {
    using T = decltype(tag);
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* m = exp_avg.data<T>();
    T* v = exp_avg_sq.data<T>();
    const double bc1 = 1.0 - std::pow(hp.beta1, static_cast<double>(hp.step));
    const double bc2 = 1.0 - std::pow(hp.beta2, static_cast<double>(hp.step));
    const T step_size = static_cast<T>(hp.lr / bc1), sqrt_bc2 = static_cast<T>(std::sqrt(bc2));
    const T b1 = static_cast<T>(hp.beta1), b2 = static_cast<T>(hp.beta2);
    const T eps = static_cast<T>(hp.eps), wd = static_cast<T>(hp.weight_decay);
    const T decay = static_cast<T>(1.0 - hp.lr * hp.weight_decay);
    const bool decoupled = hp.decoupled;
    parallel_for(param.numel(), 16384, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        T gi = g[i];
        if (decoupled) {
          p[i] *= decay;
        } else {
          gi += wd * p[i];
        }
        m[i] = b1 * m[i] + (T(1) - b1) * gi;
        v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
        p[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_bc2 + eps);
      }
    });
  });
}

}  // namespace vq::cpu
