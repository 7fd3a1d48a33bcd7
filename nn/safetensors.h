// The safetensors format (https://github.com/huggingface/safetensors): 8-byte little-endian
// header length N, N bytes of JSON header, then the raw little-endian tensor data. The header maps
// each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
// data section) and may hold "__metadata__": a string-to-string map.
//
// Reading validates everything before trusting it and throws vq::Error naming the file and the
// problem: truncated files, header lengths beyond the file, malformed JSON, unknown dtypes, offsets
// out of range, overlapping, gapped or misaligned ranges, shape/size disagreements, duplicate
// names; and limits on what an untrusted file may make us allocate. Writing is atomic (see
// file_io.h). dtypes: F32, F64, F16, BF16, I64, U8, and the narrow integers I32 and I16, which
// are read into int64 tensors (2 or 4 times their bytes in the file) and written on request
// (`narrowed`: token indices, labels).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

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

// What the header says, validated against the file's size: every entry, in order of its data.
struct SafetensorsEntry {
  std::string name;
  DType dtype;  // of the tensor it loads into (int64 for I32 and I16)
  Shape shape;
  uint64_t begin, end;  // byte range in the data section
  std::string stored;   // the file's dtype name
};
struct SafetensorsIndex {
  std::vector<SafetensorsEntry> entries;
  Metadata metadata;
  uint64_t data_start = 0;  // where the data section starts in the file
  uint64_t data_bytes() const;
};

// Int64 tensors to store narrower, by name: "I32" or "I16" (every value must fit).
using Narrowed = std::map<std::string, std::string>;

// Serialises to bytes (tensors are copied to the CPU and laid out widest dtype first; the header is
// padded with spaces so the data section starts 8-byte aligned and every tensor is aligned).
std::string safetensors_bytes(const NamedTensors& tensors, const Metadata& metadata = {},
                              const Narrowed& narrowed = {});
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata = {}, const Narrowed& narrowed = {});

// Parses bytes; `source` names them in errors.
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& source);
// The header alone: `head` holds at least the file's first 8 + N bytes (N its header length),
// `file_size` is the whole file's, so that entries are checked against the data they claim.
SafetensorsIndex parse_safetensors_index(std::string_view head, uint64_t file_size,
                                         const std::string& source);
// Reads only the header of a file (what an inspection needs).
SafetensorsIndex read_safetensors_index(const std::string& path);
// Reads the header, then each tensor `keep` accepts (all without it) by its offset straight into
// its tensor: memory stays near the size of what is loaded.
SafetensorsFile load_safetensors(const std::string& path,
                                 const std::function<bool(const std::string&)>& keep = {});

// A readable listing: one line per tensor (name, dtype, shape, bytes), totals, then the metadata.
std::string describe_safetensors(const SafetensorsIndex& file, bool list_tensors = true);

// The safetensors dtype name of a tensor dtype ("F32", ...).
std::string safetensors_dtype(DType dtype);

}  // namespace vq::nn
