// The loopback device (tests only, see use_loopback_for_cuda in backend.h): the CPU backend's
// kernels registered for DeviceType::CUDA. Storage comes from the same CPU allocator but is its
// own, so .to(), copy_ across devices and item() move bytes exactly as they would to a GPU.
#include "autograd/cpu/cpu_backend.h"

namespace vq {

namespace {

class LoopbackBackend final : public cpu::CpuBackend {
 public:
  const char* name() const override { return "loopback"; }
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
