// Error checks for CUDA runtime, cuBLAS and cuDNN calls: a failed call throws vq::Error naming the
// call text, file:line, the library's error name and its message. Nothing here aborts.
//
// The macros only need the checked library's own header where they are used; this header pulls
// in the CUDA runtime alone and no fmt, so nvcc-compiled .cu files can include it (nvcc cannot
// parse fmt 9 in C++20 mode; the message is formatted in check.cpp by the host compiler).
#pragma once

#include <cuda_runtime_api.h>

namespace vq::cuda {

// Throws vq::Error: "<library> call failed: <call> at <file>:<line>: <name>: <message>".
[[noreturn]] void throw_call_error(const char* library, const char* call, const char* file,
                                   int line, const char* name, const char* message);
// Throws vq::Error with `message` as is (for kernels' host-side argument checks).
[[noreturn]] void throw_error(const char* message);

// The message cuDNN 9 keeps about its last failure (often names the unsupported parameter).
const char* cudnn_last_message();

}  // namespace vq::cuda

// NOTE: cudaGetLastError() clears the runtime's record of a non-sticky error, so a failed call
// does not resurface later at an unrelated launch check.
#define VQ_CUDA_CHECK(call)                                                                       \
  do {                                                                                            \
    const cudaError_t vq_status_ = (call);                                                        \
    if (vq_status_ != cudaSuccess) {                                                              \
      (void)cudaGetLastError();                                                                   \
      ::vq::cuda::throw_call_error("CUDA", #call, __FILE__, __LINE__,                             \
                                   cudaGetErrorName(vq_status_), cudaGetErrorString(vq_status_)); \
    }                                                                                             \
  } while (0)

// After a <<<...>>> launch: bad configurations and missing kernel images show up here.
#define VQ_CUDA_CHECK_LAUNCH(kernel_name)                                                         \
  do {                                                                                            \
    const cudaError_t vq_status_ = cudaGetLastError();                                            \
    if (vq_status_ != cudaSuccess) {                                                              \
      ::vq::cuda::throw_call_error("CUDA", kernel_name, __FILE__, __LINE__,                       \
                                   cudaGetErrorName(vq_status_), cudaGetErrorString(vq_status_)); \
    }                                                                                             \
  } while (0)

#define VQ_CUBLAS_CHECK(call)                                           \
  do {                                                                  \
    const cublasStatus_t vq_status_ = (call);                           \
    if (vq_status_ != CUBLAS_STATUS_SUCCESS) {                          \
      ::vq::cuda::throw_call_error("cuBLAS", #call, __FILE__, __LINE__, \
                                   cublasGetStatusName(vq_status_),     \
                                   cublasGetStatusString(vq_status_));  \
    }                                                                   \
  } while (0)

#define VQ_CUDNN_CHECK(call)                                           \
  do {                                                                 \
    const cudnnStatus_t vq_status_ = (call);                           \
    if (vq_status_ != CUDNN_STATUS_SUCCESS) {                          \
      ::vq::cuda::throw_call_error("cuDNN", #call, __FILE__, __LINE__, \
                                   cudnnGetErrorString(vq_status_),    \
                                   ::vq::cuda::cudnn_last_message());  \
    }                                                                  \
  } while (0)
