// Data parallelism on GPUs: a communicator whose collectives on CUDA tensors run in NCCL, on
// the legacy default stream every other CUDA call of ours uses (so they are ordered with the
// kernels around them); CPU tensors and barriers go through `host` (MPI), which also carries
// NCCL's unique id from rank 0 to the others, as llm.c bootstraps NCCL.
#pragma once

#include <memory>

#include "nn/dist/communicator.h"

namespace vq::cuda {

// One NCCL rank per MPI rank, on `device` (each rank its own GPU: NCCL refuses two ranks on one).
std::shared_ptr<dist::Communicator> make_nccl_communicator(std::shared_ptr<dist::Communicator> host,
                                                           Device device);

}  // namespace vq::cuda
