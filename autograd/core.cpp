// dtype, device and shape helpers, the backend registry and the host side of the generator.
#include <fmt/format.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "autograd/backend.h"
#include "autograd/generator.h"
#include "autograd/philox.h"
#include "autograd/switches.h"

namespace vq {

// ---- dtype ----

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int64: return 8;
    case DType::UInt8: return 1;
    case DType::Float16: return 2;
    case DType::BFloat16: return 2;
  }
  return 0;
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
  }
  return "?";
}

bool is_floating(DType dtype) { return dtype == DType::Float32 || dtype == DType::Float64; }

// ---- device ----

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : fmt::format("cuda:{}", index);
}

Device parse_device(const std::string& text) {
  if (text == "cpu") return kCPU;
  if (text == "cuda") return Device{DeviceType::CUDA, 0};
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5 &&
      text.find_first_not_of("0123456789", 5) == std::string::npos) {
    return Device{DeviceType::CUDA, std::stoi(text.substr(5))};
  }
  throw Error(fmt::format("unknown device '{}': expected cpu, cuda or cuda:N", text));
}

// ---- shapes ----

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

std::string shape_str(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    VQ_CHECK(da == db || da == 1 || db == 1,
             "{}: shapes {} and {} cannot be broadcast together (dim {}: {} vs {})", op,
             shape_str(a), shape_str(b), i, da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  VQ_CHECK(dim >= lo && dim <= hi, "{}: dim {} is out of range for a tensor with {} dims", op, dim,
           ndim);
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

// ---- backend registry ----

namespace {
std::array<Backend*, 2>& registry() {
  static std::array<Backend*, 2> backends{};
  return backends;
}
std::atomic<int64_t> host_reads{0}, backend_calls{0};
}  // namespace

namespace {
std::atomic<bool> deterministic_kernels{false};
}  // namespace

void set_deterministic(bool on) { deterministic_kernels = on; }
bool deterministic() { return deterministic_kernels; }

DispatchCounts dispatch_counts() {
  return {host_reads.load(std::memory_order_relaxed),
          backend_calls.load(std::memory_order_relaxed)};
}

void detail::count_host_read() { host_reads.fetch_add(1, std::memory_order_relaxed); }

Backend* cpu_backend();  // autograd/cpu/cpu_backend.cpp

void register_backend(DeviceType type, Backend* backend) {
  registry()[static_cast<size_t>(type)] = backend;
}

bool backend_registered(DeviceType type) {
  return type == DeviceType::CPU || registry()[static_cast<size_t>(type)] != nullptr;
}

Backend& backend_for(Device device) {
  backend_calls.fetch_add(1, std::memory_order_relaxed);
  if (device.is_cpu()) return *cpu_backend();
  Backend* backend = registry()[static_cast<size_t>(device.type)];
  VQ_CHECK(backend != nullptr,
           "{} was requested, but this build has no CUDA backend (it was configured with "
           "VQ_CUDA=OFF or without the CUDA toolkit and cuDNN); rebuild with -DVQ_CUDA=ON on a "
           "machine with CUDA, or use --device cpu",
           device.str());
  const int selected = backend->selected_device();
  if (device.index == selected) return *backend;  // the common case: one check
  const int count = backend->device_count();
  VQ_CHECK(count > 0, "{} was requested, but no usable GPU was found: {}", device.str(),
           backend->why_unavailable());
  VQ_CHECK(device.index >= 0 && device.index < count,
           "{} was requested, but only {} GPU(s) are visible", device.str(), count);
  VQ_CHECK(selected < 0,
           "{} was requested, but this process computes on cuda:{} (one GPU per process: a run's "
           "tensors and modules all live on the GPU it chose; under mpirun each rank takes the GPU "
           "of its local rank)",
           device.str(), selected);
  backend->select_device(device.index);
  return *backend;
}

int gpu_count() {
  Backend* backend = registry()[static_cast<size_t>(DeviceType::CUDA)];
  return backend != nullptr ? backend->device_count() : 0;
}

bool cuda_available() { return gpu_count() > 0; }

// ---- generator ----

uint32_t Generator::next_u32() { return philox4x32_10(reserve(1), seed_).v[0]; }

double Generator::next_double() {
  const Philox4 r = philox4x32_10(reserve(1), seed_);
  const uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 21) ^ r.v[1];
  return static_cast<double>(bits & ((uint64_t{1} << 53) - 1)) * 0x1.0p-53;
}

int64_t Generator::next_below(int64_t n) {
  VQ_CHECK(n > 0, "Generator::next_below: n must be positive, got {}", n);
  const Philox4 r = philox4x32_10(reserve(1), seed_);
  const uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
  return static_cast<int64_t>(bits % static_cast<uint64_t>(n));
}

namespace {
// SplitMix64's finaliser: a bijection on 64 bits that spreads every input bit over the output.
uint64_t mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

uint64_t stream_key(uint64_t seed, RandomStream purpose) {
  return mix64(mix64(seed) ^ mix64(0x9E3779B97F4A7C15ull * static_cast<uint64_t>(purpose)));
}

Generator stream_generator(uint64_t seed, RandomStream purpose, uint64_t step) {
  Generator gen(stream_key(seed, purpose));
  gen.reserve(step << 40);
  return gen;
}

Generator& default_generator() {
  static Generator gen(0);
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().set_state(seed, 0); }

bool env_switch(const char* name, bool default_on) {
  const char* v = std::getenv(name);
  return v == nullptr ? default_on : std::string(v) != "0";
}

}  // namespace vq
