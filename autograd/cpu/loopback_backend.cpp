// The loopback device (tests only, see use_loopback_for_cuda in backend.h): the CPU backend's
// kernels registered for DeviceType::CUDA. Storage comes from the same CPU allocator but is its
// own, so .to(), copy_ across devices and item() move bytes exactly as they would to a GPU.
// Like CUDA it takes convolution operands already in the low precision and channels-last (so the
// op's cast-once path runs here too): they are widened back to contiguous float32, exactly, for
// the CPU kernels, which round them to the same values again. It pretends to be two GPUs, one of
// which a process selects like the CUDA backend does, so the one-GPU-per-process refusal runs
// without a GPU.
#include <atomic>

#include "autograd/cpu/cpu_backend.h"

namespace vq {

namespace {

// t in the dtype of `like` (a float32 result), contiguous for the CPU kernels: a low-precision
// operand (channels-last, as the CUDA backend takes them) widened exactly.
Tensor widened(const Tensor& t, const Tensor& like) {
  return (t.dtype() == like.dtype() ? t : t.to(like.dtype())).contiguous();
}

class LoopbackBackend final : public cpu::CpuBackend {
 public:
  const char* name() const override { return "loopback"; }
  int device_count() override { return 2; }
  void select_device(int index) override {
    int none = -1;
    VQ_CHECK(selected_.compare_exchange_strong(none, index) || none == index,
             "loopback: cuda:{} was requested, but this process computes on cuda:{}", index, none);
  }
  int selected_device() const override { return selected_.load(); }
  bool takes_low_precision_operands() const override { return true; }
  bool wants_channels_last_operands() const override { return true; }
  void conv2d_forward(const ConvShape& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                      const Tensor& residual, const Tensor& y) override {
    CpuBackend::conv2d_forward(s, widened(x, y), widened(w, y), bias, residual, y);
  }
  void conv2d_backward_data(const ConvShape& s, const Tensor& dy, const Tensor& w,
                            const Tensor& dx) override {
    CpuBackend::conv2d_backward_data(s, widened(dy, dx), widened(w, dx), dx);
  }
  void conv2d_backward_weight(const ConvShape& s, const Tensor& dy, const Tensor& x,
                              const Tensor& dw, const Tensor& dbias) override {
    CpuBackend::conv2d_backward_weight(s, widened(dy, dw), widened(x, dw), dw, dbias);
  }

 private:
  std::atomic<int> selected_{-1};
};

LoopbackBackend* loopback_instance = nullptr;

}  // namespace

void use_loopback_for_cuda() {
  // Never destroyed, like the CUDA backend: storages freed during static destruction call it.
  if (loopback_instance == nullptr) loopback_instance = new LoopbackBackend();
  register_backend(DeviceType::CUDA, loopback_instance);
}

bool cuda_is_loopback() {
  return loopback_instance != nullptr && backend_registered(DeviceType::CUDA) &&
         &backend_for(Device{DeviceType::CUDA, 0}) == loopback_instance;
}

}  // namespace vq
