// Storage: one block of device memory shared by a tensor and all its views. The version counter
// is bumped by every in-place write, so autograd can refuse to use a saved tensor that changed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "autograd/device.h"

namespace vq {

class Backend;

class Storage {
 public:
  // Allocates `nbytes` (uninitialised) on `device` through that device's backend.
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Backend* backend_ = nullptr;
  uint64_t version_ = 0;
};

}  // namespace vq
