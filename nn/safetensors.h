// The safetensors format (https://github.com/huggingface/safetensors): 8-byte little-endian
// header length N, N bytes of JSON header, then the raw little-endian tensor data. The header maps
// each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
// data section) and may hold "__metadata__": a string-to-string map.
//
// Reading validates everything before trusting it and throws vq::Error naming the file and the
// problem: truncated files, header lengths beyond the file, malformed JSON, unknown dtypes, offsets
// out of range, overlapping, gapped or misaligned ranges, shape/size disagreements, duplicate
// names; and limits on what an untrusted file may make us allocate. Writing is atomic (see
// file_io.h). dtypes: F32, F64, F16, BF16, I64, U8.
#pragma once

#include <map>
#include <string>

#include "nn/module.h"

namespace vq::nn {

using Metadata = std::map<std::string, std::string>;

// The header's size limit is the Python safetensors library's own. Tensor data is checked against
// the bytes actually present before any tensor is allocated, so the file size bounds the rest.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;
inline constexpr uint64_t kMaxSafetensorsFileBytes = uint64_t{64} << 30;

struct SafetensorsFile {
  NamedTensors tensors;  // in file order of data offsets, on the CPU
  Metadata metadata;
};

// Serialises to bytes (tensors are copied to the CPU and laid out widest dtype first; the header is
// padded with spaces so the data section starts 8-byte aligned and every tensor is aligned).
std::string safetensors_bytes(const NamedTensors& tensors, const Metadata& metadata = {});
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata = {});

// Parses bytes; `source` names them in errors.
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& source);
SafetensorsFile load_safetensors(const std::string& path);

// A readable listing: one line per tensor (name, dtype, shape, bytes), totals, then the metadata.
std::string describe_safetensors(const SafetensorsFile& file, bool list_tensors = true);

// The safetensors dtype name ("F32", ...) and back.
std::string safetensors_dtype(DType dtype);
DType dtype_from_safetensors(const std::string& name, const std::string& source);

}  // namespace vq::nn
