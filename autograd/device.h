// Devices. The CPU is always there; CUDA tensors need a build with the CUDA backend and a GPU.
#pragma once

#include <string>

namespace vq {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device&) const = default;
  std::string str() const;  // "cpu", "cuda:0"
};

inline const Device kCPU{DeviceType::CPU, 0};

// Parses "cpu", "cuda", "cuda:1"; throws vq::Error naming the text otherwise.
Device parse_device(const std::string& text);

// The GPUs this process can see (CUDA_VISIBLE_DEVICES applies); 0 without the CUDA backend.
// Counting creates no GPU context: the first tensor on "cuda:i" does, and chooses GPU i for the
// whole process (one GPU per process; Backend::select_device).
int gpu_count();
// Whether the CUDA backend is compiled in and at least one GPU answers.
bool cuda_available();

}  // namespace vq
