// CudaBackend: registration, the device probe, memory (the caching allocator), copies with dtype
// conversion, host transfers, fills, arange and the Philox random streams, plus the TF32 switch.
// Transfers wait for queued work (the legacy default stream), so a tensor read back to the host
// always sees every kernel queued before. Small reads (a step's losses and gradient norms, a log
// line's metrics) go through a pinned staging buffer, which the GPU writes directly; larger ones
// and uploads use cudaMemcpy on the caller's pageable memory.
#include "cuda/cuda_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/cuda_settings.h"
#include "cuda/kernels.h"
#include "cuda/tensor_args.h"

#ifndef VQ_CUDA_ARCHITECTURES
#define VQ_CUDA_ARCHITECTURES "?"
#endif

namespace vq::cuda {

static_assert(static_cast<int>(ReduceKind::Sum) == static_cast<int>(ReduceOp::Sum) &&
                  static_cast<int>(ReduceKind::Max) == static_cast<int>(ReduceOp::Max) &&
                  static_cast<int>(ReduceKind::Min) == static_cast<int>(ReduceOp::Min),
              "ReduceKind must mirror vq::ReduceOp");

namespace {
std::atomic<bool> tf32_allowed{false};
}

void set_allow_tf32(bool allow) { tf32_allowed = allow; }
bool allow_tf32() { return tf32_allowed; }
void set_memory_limit(size_t bytes) { CachingAllocator::instance().set_limit(bytes); }
size_t memory_limit() { return CachingAllocator::instance().limit(); }

void throw_unsupported_dtype(const char* op, DType dtype) {
  throw Error(fmt::format("{} on cuda: unsupported dtype {}", op, dtype_name(dtype)));
}

void register_cuda_backend() {
  // Never destroyed: storages released during static destruction still call into it.
  static CudaBackend* backend = new CudaBackend();
  register_backend(DeviceType::CUDA, backend);
}

namespace {
const bool registered_at_startup = (register_cuda_backend(), true);
}

// ---- device ----

void CudaBackend::probe() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    reason_ = fmt::format("cudaGetDeviceCount failed: {}", cudaGetErrorString(status));
    if (status == cudaErrorInsufficientDriver) {
      // The runtime says the same whether the driver is missing or too old; tell them apart.
      int driver = 0, runtime = 0;
      (void)cudaDriverGetVersion(&driver);
      (void)cudaRuntimeGetVersion(&runtime);
      (void)cudaGetLastError();
      reason_ +=
          driver == 0
              ? std::string(" (no NVIDIA driver is installed on this machine)")
              : fmt::format(" (the driver supports CUDA {}.{}, this build needs {}.{})",
                            driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    }
    return;
  }
  if (count == 0) {
    reason_ = "cudaGetDeviceCount reports no CUDA devices";
    return;
  }
  count_.store(count, std::memory_order_release);
}

int CudaBackend::device_count() {
  std::call_once(probed_, [this] { probe(); });
  return count_.load(std::memory_order_acquire);
}

void CudaBackend::select_device(int index) {
  std::lock_guard<std::mutex> lock(select_mutex_);
  const int selected = selected_.load();
  if (selected == index) return;
  VQ_CHECK(selected < 0, "cuda:{} was requested, but this process computes on cuda:{}", index,
           selected);
  VQ_CHECK(index >= 0 && index < device_count(), "cuda:{} was requested, but {} GPU(s) are visible",
           index, device_count());
  // First, so that the context (created by the next call that needs one) is on this GPU.
  VQ_CUDA_CHECK(cudaSetDevice(index));
  const cudaError_t image = probe_kernel_image();
  if (image != cudaSuccess) {
    (void)cudaGetLastError();
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) (void)cudaGetLastError();
    reason_ = fmt::format(
        "GPU {} ({}, compute capability {}.{}) cannot run this build's kernels, compiled for CUDA "
        "architectures {}: {}; rebuild with -DCMAKE_CUDA_ARCHITECTURES={}{}",
        index, prop.name, prop.major, prop.minor, VQ_CUDA_ARCHITECTURES, cudaGetErrorString(image),
        prop.major, prop.minor);
    count_ = 0;  // nothing here is usable by this process now
    throw Error(reason_);
  }
  selected_.store(index, std::memory_order_release);
}

std::string CudaBackend::why_unavailable() {
  std::call_once(probed_, [this] { probe(); });
  return reason_;
}

// Convolutions run in the low precision on tensor cores (conv_cudnn.cpp): float16 ones since
// Volta (7.0), bfloat16 ones since Ampere (8.0).
std::string CudaBackend::why_no_low_precision(DType low) {
  if (device_count() == 0) return reason_;
  const int needed = low == DType::BFloat16 ? 80 : low == DType::Float16 ? 70 : 0;
  if (needed == 0) return fmt::format("{} is not a mixed-precision type", dtype_name(low));
  const int gpu = std::max(selected_device(), 0);  // the process's GPU (0 until one is chosen)
  int major = 0, minor = 0;
  VQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, gpu));
  VQ_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, gpu));
  if (major * 10 + minor >= needed) return "";
  return fmt::format(
      "{} convolutions need tensor cores of compute capability {}.{} or newer; GPU {} has {}.{}{}",
      dtype_name(low), needed / 10, needed % 10, gpu, major, minor,
      low == DType::BFloat16 ? " (try --amp_dtype fp16)" : "");
}

void CudaBackend::synchronize() { VQ_CUDA_CHECK(cudaDeviceSynchronize()); }

// ---- memory ----

void* CudaBackend::allocate(size_t nbytes) { return CachingAllocator::instance().allocate(nbytes); }

void CudaBackend::deallocate(void* ptr, size_t) { CachingAllocator::instance().deallocate(ptr); }

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  for_each_strided<2>({&dst, &src}, [&](const Strided<2>& s, int64_t n) {
    launch_copy(s, n, dst.dtype(), src.dtype());
  });
}

void CudaBackend::copy_from_host(const void* host, const Tensor& dst) {
  const size_t nbytes = dst.numel() * dtype_size(dst.dtype());
  if (nbytes == 0) return;
  VQ_CUDA_CHECK(cudaMemcpy(dst.raw_data(), host, nbytes, cudaMemcpyHostToDevice));
}

void CudaBackend::copy_to_host(const Tensor& src, void* host) {
  const size_t nbytes = src.numel() * dtype_size(src.dtype());
  if (nbytes == 0) return;
  constexpr size_t kStagingBytes = size_t{64} << 10;
  if (nbytes <= kStagingBytes) {
    // Allocated once, on the first small read (a context exists by then), never freed.
    static void* staging = [] {
      void* p = nullptr;
      VQ_CUDA_CHECK(cudaMallocHost(&p, kStagingBytes));
      return p;
    }();
    static std::mutex staging_mutex;
    std::lock_guard<std::mutex> lock(staging_mutex);
    VQ_CUDA_CHECK(cudaMemcpyAsync(staging, src.raw_data(), nbytes, cudaMemcpyDeviceToHost, 0));
    VQ_CUDA_CHECK(cudaStreamSynchronize(0));
    std::memcpy(host, staging, nbytes);
    return;
  }
  VQ_CUDA_CHECK(cudaMemcpy(host, src.raw_data(), nbytes, cudaMemcpyDeviceToHost));
}

void CudaBackend::fill(const Tensor& dst, double value) {
  for_each_strided<1>(
      {&dst}, [&](const Strided<1>& s, int64_t n) { launch_fill(s, n, dst.dtype(), value); });
}

void CudaBackend::arange(const Tensor& dst, int64_t start) {
  launch_arange(dst.raw_data(), dst.dtype(), dst.numel(), start);
}

// ---- random: element i of the stream depends only on (seed, offset, i), as on the CPU ----

void CudaBackend::uniform(const Tensor& dst, double lo, double hi, uint64_t seed, uint64_t offset) {
  launch_uniform(dst.raw_data(), dst.dtype(), dst.numel(), lo, hi, seed, offset);
}

void CudaBackend::normal(const Tensor& dst, double mean, double std, uint64_t seed,
                         uint64_t offset) {
  launch_normal(dst.raw_data(), dst.dtype(), dst.numel(), mean, std, seed, offset);
}

}  // namespace vq::cuda
