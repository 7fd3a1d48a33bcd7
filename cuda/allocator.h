// The caching device allocator. cudaMalloc and cudaFree synchronise the device and cost tens of
// microseconds, while a training step frees and re-requests the same activation sizes every
// iteration, so freed blocks are kept in free lists and handed out again.
//
// Sizes are rounded to classes (512 B steps up to 1 MiB, 2 MiB steps above) so near-equal
// requests share blocks. All our work runs on the legacy default stream, which orders every
// kernel after the ones before it, so a block freed on the host can be reused at once; a
// multi-stream version would need one free list per stream plus events. Blocks are never split.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>

namespace vq::cuda {

struct AllocatorStats {
  size_t allocated = 0;       // bytes in blocks handed out now (rounded sizes)
  size_t requested = 0;       // bytes asked for by the blocks handed out now
  size_t reserved = 0;        // bytes held from cudaMalloc: handed out + cached
  size_t cached = 0;          // bytes in the free lists
  size_t peak_allocated = 0;  // highest `allocated` since start or reset_peak()
  size_t device_mallocs = 0;  // cudaMalloc calls that succeeded
  size_t cache_hits = 0;      // requests served from the free lists
};

class CachingAllocator {
 public:
  // The process-wide allocator; deliberately never destroyed, so tensors released during static
  // destruction still find it.
  static CachingAllocator& instance();

  // Throws vq::Error on out-of-memory after releasing the cache and retrying once.
  void* allocate(size_t nbytes);
  // Returns the block to the free lists; never throws (called from destructors).
  void deallocate(void* ptr) noexcept;
  // cudaFree every cached block (handed-out blocks are untouched).
  void empty_cache();
  AllocatorStats stats() const;
  void reset_peak();
  void set_limit(size_t bytes);  // 0: none (see cuda_settings.h)
  size_t limit() const;

  static size_t round_size(size_t nbytes);
  static constexpr size_t kSmallStep = 512;
  static constexpr size_t kSmallLimit = size_t{1} << 20;
  static constexpr size_t kLargeStep = size_t{2} << 20;

 private:
  CachingAllocator() = default;
  void* take_cached(size_t size, size_t& block);     // with mutex_ held
  void release_cached();                             // with mutex_ held
  cudaError_t device_malloc(void** p, size_t size);  // with mutex_ held; honours limit_

  mutable std::mutex mutex_;
  std::multimap<size_t, void*> free_;  // size -> block
  struct Live {
    size_t size, requested;
  };
  std::unordered_map<void*, Live> live_;
  AllocatorStats stats_;
  size_t limit_ = 0;
};

// Scratch device memory (workspaces, per-kernel temporaries) from the caching allocator, freed
// when it goes out of scope.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t nbytes)
      : ptr_(nbytes ? CachingAllocator::instance().allocate(nbytes) : nullptr), size_(nbytes) {}
  ~DeviceBuffer() {
    if (ptr_) CachingAllocator::instance().deallocate(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return size_; }

 private:
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace vq::cuda
