// The caching allocator's bookkeeping and its out-of-memory path (see allocator.h for the
// policy). Sizes in bytes. The lock covers the free lists, the live-block map and the stats;
// cudaMalloc/cudaFree run under it, which is fine while one host thread drives the GPU.
#include "cuda/allocator.h"

#include <fmt/format.h>

#include "autograd/error.h"
#include "cuda/check.h"

namespace vq::cuda {

namespace {

std::string human_bytes(size_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.2f} {}", v, units[u]);
}

}  // namespace

CachingAllocator& CachingAllocator::instance() {
  static CachingAllocator* allocator = new CachingAllocator();
  return *allocator;
}

size_t CachingAllocator::round_size(size_t nbytes) {
  const size_t n = nbytes == 0 ? 1 : nbytes;
  const size_t step = n <= kSmallLimit ? kSmallStep : kLargeStep;
  return (n + step - 1) / step * step;
}

void* CachingAllocator::take_cached(size_t size, size_t& block) {
  // Small classes must match exactly. A large request may take a cached block up to 1/8 bigger
  // (at least one class): activations of a step come back in the same sizes, and a loose fit
  // would let one huge block hold a small tensor.
  const size_t slack = size <= kSmallLimit ? 0 : std::max(kLargeStep, size / 8);
  auto it = free_.lower_bound(size);
  if (it == free_.end() || it->first > size + slack) return nullptr;
  void* p = it->second;
  block = it->first;
  stats_.cached -= it->first;
  free_.erase(it);
  return p;
}

void CachingAllocator::release_cached() {
  for (auto& [size, p] : free_) {
    // NOTE: a failure here means the context is already broken; the next cudaMalloc reports it.
    if (cudaFree(p) == cudaSuccess) stats_.reserved -= size;
  }
  (void)cudaGetLastError();
  free_.clear();
  stats_.cached = 0;
}

cudaError_t CachingAllocator::device_malloc(void** p, size_t size) {
  if (limit_ > 0 && stats_.reserved + size > limit_) return cudaErrorMemoryAllocation;
  const cudaError_t status = cudaMalloc(p, size);
  // A failed cudaMalloc also records itself as the runtime's last error; it is handled here, and
  // only then is that error cleared (the limit's refusal must not clear an earlier kernel's).
  if (status == cudaErrorMemoryAllocation) (void)cudaGetLastError();
  return status;
}

void* CachingAllocator::allocate(size_t nbytes) {
  const size_t size = round_size(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  size_t block = size;  // a cached large block may be bigger than the class asked for
  void* p = take_cached(size, block);
  if (p != nullptr) {
    ++stats_.cache_hits;
  } else {
    cudaError_t status = device_malloc(&p, size);
    size_t released = 0;
    if (status == cudaErrorMemoryAllocation) {
      // Out of memory: give every cached block back to the driver and try once more.
      released = stats_.cached;
      release_cached();
      status = device_malloc(&p, size);
    }
    if (status == cudaErrorMemoryAllocation) {
      size_t free_bytes = 0, total_bytes = 0;
      const bool info = cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess;
      (void)cudaGetLastError();
      throw Error(fmt::format(
          "CUDA out of memory: could not allocate {} ({} bytes requested, rounded to {}). This "
          "process holds {} in live tensors (peak {}) and {} reserved from the driver; {} of "
          "cached blocks were released before retrying.{}{} Reduce the batch size or image size, "
          "or free tensors you no longer need.",
          human_bytes(size), nbytes, size, human_bytes(stats_.allocated),
          human_bytes(stats_.peak_allocated), human_bytes(stats_.reserved), human_bytes(released),
          info ? fmt::format(" The GPU reports {} free of {}.", human_bytes(free_bytes),
                             human_bytes(total_bytes))
               : std::string(),
          limit_ > 0 ? fmt::format(" The allocator's memory limit is {}.", human_bytes(limit_))
                     : std::string()));
    }
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      throw_call_error("CUDA", "cudaMalloc", __FILE__, __LINE__, cudaGetErrorName(status),
                       cudaGetErrorString(status));
    }
    ++stats_.device_mallocs;
    stats_.reserved += size;
  }
  live_[p] = Live{block, nbytes};
  stats_.allocated += block;
  stats_.requested += nbytes;
  stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
  return p;
}

void CachingAllocator::deallocate(void* ptr) noexcept {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) return;  // not ours: ignore rather than corrupt the free lists
  const Live block = it->second;
  live_.erase(it);
  stats_.allocated -= block.size;
  stats_.requested -= block.requested;
  stats_.cached += block.size;
  try {
    free_.emplace(block.size, ptr);
  } catch (...) {
    // The free list could not grow (host out of memory): hand the block back to the driver.
    stats_.cached -= block.size;
    if (cudaFree(ptr) == cudaSuccess) stats_.reserved -= block.size;
    (void)cudaGetLastError();
  }
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::set_limit(size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  limit_ = bytes;
}

size_t CachingAllocator::limit() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return limit_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_allocated = stats_.allocated;
}

}  // namespace vq::cuda
