// CPU memory: allocation, copies with dtype conversion, fills and random streams.
//
// Large blocks are cached by exact size: a training step allocates the same activation sizes
// every step, and handing freshly mmapped pages back and forth with the kernel (glibc maps every
// block above 32 MiB) costs a page fault per 4 KiB, which showed up as several percent of a step.
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "autograd/cpu/cpu_backend.h"
#include "autograd/cpu/loops.h"
#include "autograd/philox.h"

namespace vq {

Backend* cpu_backend() {
  static cpu::CpuBackend backend;
  return &backend;
}

namespace cpu {

namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kCacheMinBytes = size_t{1} << 20;
constexpr size_t kCacheMaxBytes = size_t{4} << 30;

class BlockCache {
 public:
  void* take(size_t nbytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(nbytes);
    if (it == free_.end()) return nullptr;
    void* p = it->second;
    free_.erase(it);
    cached_bytes_ -= nbytes;
    return p;
  }
  bool give(void* p, size_t nbytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_bytes_ + nbytes > kCacheMaxBytes) return false;
    free_.emplace(nbytes, p);
    cached_bytes_ += nbytes;
    return true;
  }
  ~BlockCache() {
    for (auto& [size, p] : free_) std::free(p);
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  size_t cached_bytes_ = 0;
};

BlockCache& block_cache() {
  static BlockCache cache;
  return cache;
}

size_t rounded(size_t nbytes) {
  return (std::max<size_t>(nbytes, 1) + kAlignment - 1) & ~(kAlignment - 1);
}

// IEEE half and bfloat16 <-> float (storage conversions only).
float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      uint32_t m = mant;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400u) == 0);
      bits = sign | ((127 - 15 - e) << 23) | ((m & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((bits >> 23) & 0xff) - 127 + 15;
  uint32_t mant = bits & 0x7fffffu;
  if (((bits >> 23) & 0xff) == 0xff)
    return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0));
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (exp <= 0) {                                               // subnormal or zero
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - exp;
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) ++half;  // round to nearest even
  return static_cast<uint16_t>(half);
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(bits >> 16);
}

double load_as_double(DType dtype, const char* p) {
  switch (dtype) {
    case DType::Float32: return *reinterpret_cast<const float*>(p);
    case DType::Float64: return *reinterpret_cast<const double*>(p);
    case DType::Int64: return static_cast<double>(*reinterpret_cast<const int64_t*>(p));
    case DType::UInt8: return *reinterpret_cast<const uint8_t*>(p);
    case DType::Float16: return half_to_float(*reinterpret_cast<const uint16_t*>(p));
    case DType::BFloat16: return bf16_to_float(*reinterpret_cast<const uint16_t*>(p));
  }
  return 0;
}

void store_from_double(DType dtype, char* p, double v) {
  switch (dtype) {
    case DType::Float32: *reinterpret_cast<float*>(p) = static_cast<float>(v); return;
    case DType::Float64: *reinterpret_cast<double*>(p) = v; return;
    case DType::Int64: *reinterpret_cast<int64_t*>(p) = static_cast<int64_t>(v); return;
    case DType::UInt8: *reinterpret_cast<uint8_t*>(p) = static_cast<uint8_t>(v); return;
    case DType::Float16:
      *reinterpret_cast<uint16_t*>(p) = float_to_half(static_cast<float>(v));
      return;
    case DType::BFloat16:
      *reinterpret_cast<uint16_t*>(p) = float_to_bf16(static_cast<float>(v));
      return;
  }
}

}  // namespace

void* CpuBackend::allocate(size_t nbytes) {
  const size_t size = rounded(nbytes);
  if (size >= kCacheMinBytes) {
    if (void* p = block_cache().take(size)) return p;
  }
  void* p = std::aligned_alloc(kAlignment, size);
  VQ_CHECK(p != nullptr, "out of CPU memory allocating {} bytes", nbytes);
  return p;
}

void CpuBackend::deallocate(void* ptr, size_t nbytes) {
  const size_t size = rounded(nbytes);
  if (size >= kCacheMinBytes && block_cache().give(ptr, size)) return;
  std::free(ptr);
}

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  StridedLoop<2> loop({&dst, &src});
  const DType sd = src.dtype(), dd = dst.dtype();
  if (sd == dd) {
    const size_t es = dtype_size(sd);
    loop.run([es](const std::array<char*, 2>& p, const std::array<int64_t, 2>& s, int64_t n) {
      if (s[0] == static_cast<int64_t>(es) && s[1] == static_cast<int64_t>(es)) {
        std::memcpy(p[0], p[1], n * es);
      } else {
        for (int64_t i = 0; i < n; ++i) std::memcpy(p[0] + i * s[0], p[1] + i * s[1], es);
      }
    });
    return;
  }
  if (sd == DType::Float32 && dd == DType::Float64) {
    loop.run([](const std::array<char*, 2>& p, const std::array<int64_t, 2>& s, int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        *reinterpret_cast<double*>(p[0] + i * s[0]) =
            *reinterpret_cast<const float*>(p[1] + i * s[1]);
      }
    });
    return;
  }
  loop.run([sd, dd](const std::array<char*, 2>& p, const std::array<int64_t, 2>& s, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
      store_from_double(dd, p[0] + i * s[0], load_as_double(sd, p[1] + i * s[1]));
  });
}

void CpuBackend::copy_from_host(const void* host, const Tensor& dst) {
  std::memcpy(dst.raw_data(), host, dst.numel() * dtype_size(dst.dtype()));
}

void CpuBackend::copy_to_host(const Tensor& src, void* host) {
  std::memcpy(host, src.raw_data(), src.numel() * dtype_size(src.dtype()));
}

void CpuBackend::fill(const Tensor& dst, double value) {
  StridedLoop<1> loop({&dst});
  const DType dt = dst.dtype();
  dispatch_arith(
      dt == DType::Float16 || dt == DType::BFloat16 ? DType::UInt8 : dt, "fill", [&](auto tag) {
        using T = decltype(tag);
        if (dt == DType::Float16 || dt == DType::BFloat16) {
          const uint16_t bits = dt == DType::Float16 ? float_to_half(static_cast<float>(value))
                                                     : float_to_bf16(static_cast<float>(value));
          loop.run(
              [bits](const std::array<char*, 1>& p, const std::array<int64_t, 1>& s, int64_t n) {
                for (int64_t i = 0; i < n; ++i) std::memcpy(p[0] + i * s[0], &bits, 2);
              });
          return;
        }
        const T v = static_cast<T>(value);
        loop.run([v](const std::array<char*, 1>& p, const std::array<int64_t, 1>& s, int64_t n) {
          if (s[0] == sizeof(T)) {
            T* out = reinterpret_cast<T*>(p[0]);
            for (int64_t i = 0; i < n; ++i) out[i] = v;
          } else {
            for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * s[0]) = v;
          }
        });
      });
}

void CpuBackend::arange(const Tensor& dst, int64_t start) {
  dispatch_arith(dst.dtype(), "arange", [&](auto tag) {
    using T = decltype(tag);
    T* out = dst.data<T>();
    for (int64_t i = 0; i < dst.numel(); ++i) out[i] = static_cast<T>(start + i);
  });
}

void CpuBackend::uniform(const Tensor& dst, double lo, double hi, uint64_t seed, uint64_t offset) {
  dispatch_floating(dst.dtype(), "uniform", [&](auto tag) {
    using T = decltype(tag);
    T* out = dst.data<T>();
    const T a = static_cast<T>(lo), scale = static_cast<T>(hi - lo);
    parallel_for(dst.numel(), 16384, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        out[i] = philox_affine(a, scale, static_cast<T>(philox_uniform_at(seed, offset, i)));
    });
  });
}

void CpuBackend::normal(const Tensor& dst, double mean, double std, uint64_t seed,
                        uint64_t offset) {
  dispatch_floating(dst.dtype(), "normal", [&](auto tag) {
    using T = decltype(tag);
    T* out = dst.data<T>();
    const T m = static_cast<T>(mean), s = static_cast<T>(std);
    parallel_for(dst.numel(), 16384, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        out[i] = philox_affine(m, s, static_cast<T>(philox_normal_at(seed, offset, i)));
    });
  });
}

}  // namespace cpu
}  // namespace vq
