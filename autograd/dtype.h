// Element types. Float32 is the working type; Float64 exists for gradchecks; Int64 holds indices
// and UInt8 images and boolean masks. Float16/BFloat16 are storage-only for now: tensors of these
// types can be created, saved, loaded and converted with to(), and every math op asks for a
// conversion first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vq {

enum class DType : uint8_t { Float32, Float64, Int64, UInt8, Float16, BFloat16 };

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);  // "float32", ...
bool is_floating(DType dtype);             // Float32 or Float64: the types math ops accept

// C++ type -> DType.
template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::Float32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::Float64;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::Int64;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::UInt8;
}

}  // namespace vq
