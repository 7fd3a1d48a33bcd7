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

void set_memory_limit(size_t bytes);
size_t memory_limit();

}  // namespace vq::cuda
