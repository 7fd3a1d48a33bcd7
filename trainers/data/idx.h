// The IDX format of (Fashion-)MNIST: a big-endian header (magic 0x00000803 for uint8 images with
// dims N x rows x cols, 0x00000801 for N uint8 labels), then the bytes; Debian ships the files
// gzip-compressed. Everything is checked against the bytes present, and decompression stops at
// kMaxIdxBytes, so a damaged or hostile file gets an error naming it, never a crash or a huge
// allocation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vq::train {

inline constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 30;  // decompressed; the train split: 47 MB

struct IdxImages {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count x rows x cols
};

// The file's bytes, decompressed when they are gzip data (plain IDX files are read as they are).
std::string read_idx_file(const std::string& path);
// Decompresses gzip bytes (at most max_bytes out); `source` names them in errors.
std::string gunzip(const std::string& bytes, const std::string& source, uint64_t max_bytes);

IdxImages parse_idx_images(const std::string& bytes, const std::string& source);
std::vector<uint8_t> parse_idx_labels(const std::string& bytes, const std::string& source);

}  // namespace vq::train
