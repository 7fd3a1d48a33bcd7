// Public switches of the CUDA backend (callable whether or not a GPU is present).
// TF32: on Ampere and newer GPUs, float32 GEMMs and convolutions can run on tensor cores with
// 10-bit mantissas (about 1e-3 relative error per product), several times faster. It is off by
// default so float32 results agree with the CPU to float rounding; turn it on for training speed.
// Memory limit: the caching allocator holds at most this many bytes from the driver (0, the
// default: whatever the GPU has); past it, an allocation behaves as on a full GPU (cached blocks
// are released and the allocation retried once, then a clear error). For sharing a GPU, and for
// testing the out-of-memory path on a GPU far larger than any test.
#pragma once

#include <cstddef>

namespace vq::cuda {

void set_allow_tf32(bool allow);
bool allow_tf32();

// Sets the TF32 switch for a scope and restores the previous setting when it ends, also when an
// exception leaves it (a test that throws must not leave TF32 on for the tests after it).
class Tf32Scope {
 public:
  explicit Tf32Scope(bool allow) : previous_(allow_tf32()) { set_allow_tf32(allow); }
  ~Tf32Scope() { set_allow_tf32(previous_); }
  Tf32Scope(const Tf32Scope&) = delete;
  Tf32Scope& operator=(const Tf32Scope&) = delete;

 private:
  bool previous_;
};

void set_memory_limit(size_t bytes);
size_t memory_limit();

}  // namespace vq::cuda
