// Public switches of the CUDA backend (callable whether or not a GPU is present).
// TF32: on Ampere and newer GPUs, float32 GEMMs and convolutions can run on tensor cores with
// 10-bit mantissas (about 1e-3 relative error per product), several times faster. It is off by
// default so float32 results agree with the CPU to float rounding; turn it on for training speed.
#pragma once

namespace vq::cuda {

void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace vq::cuda
