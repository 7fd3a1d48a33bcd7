#include "trainers/data/idx.h"

#include <zlib.h>

#include <algorithm>

#include "autograd/error.h"
#include "nn/file_io.h"
#include "trainers/data/image.h"

namespace vq::train {

namespace {

uint32_t big_endian(const std::string& bytes, size_t at) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data() + at);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

bool is_gzip(const std::string& bytes) {
  return bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f &&
         static_cast<uint8_t>(bytes[1]) == 0x8b;
}

}  // namespace

std::string gunzip(const std::string& bytes, const std::string& source, uint64_t max_bytes) {
  z_stream z{};
  VQ_CHECK(inflateInit2(&z, 16 + MAX_WBITS) == Z_OK, "{}: cannot start zlib", source);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  std::string out;
  int rc = Z_OK;
  // Feeds at most 1 GiB of input per call (zlib counts in 32 bits) and grows the output in steps.
  size_t consumed = 0;
  while (rc != Z_STREAM_END) {
    if (z.avail_in == 0 && consumed < bytes.size()) {
      z.avail_in = static_cast<uInt>(std::min<size_t>(bytes.size() - consumed, 1u << 30));
      consumed += z.avail_in;
    }
    const size_t before = out.size();
    if (before >= max_bytes) {
      inflateEnd(&z);
      throw Error(fmt::format("{}: decompresses to more than {} bytes (the limit kMaxIdxBytes)",
                              source, max_bytes));
    }
    out.resize(std::min<uint64_t>(max_bytes, std::max<size_t>(2 * before, 1 << 16)));
    z.next_out = reinterpret_cast<Bytef*>(out.data() + before);
    z.avail_out = static_cast<uInt>(out.size() - before);
    rc = inflate(&z, Z_NO_FLUSH);
    out.resize(out.size() - z.avail_out);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      const std::string reason =
          rc == Z_BUF_ERROR ? "the data ends early (truncated)" : (z.msg ? z.msg : "bad data");
      inflateEnd(&z);
      throw Error(fmt::format("{} is corrupt (gzip error: {})", source, reason));
    }
  }
  inflateEnd(&z);
  return out;
}

std::string read_idx_file(const std::string& path) {
  std::string bytes;
  try {
    bytes = nn::read_file(path, kMaxIdxBytes, "IDX file");
  } catch (const Error& e) {
    throw Error(fmt::format(
        "{} (is the Debian package dataset-fashion-mnist installed? scripts/setup.sh installs "
        "it; or point VQ_FASHION_MNIST_DIR at a folder with its files)",
        e.what()));
  }
  return is_gzip(bytes) ? gunzip(bytes, "'" + path + "'", kMaxIdxBytes) : bytes;
}

IdxImages parse_idx_images(const std::string& bytes, const std::string& source) {
  VQ_CHECK(bytes.size() >= 16 && big_endian(bytes, 0) == 0x803,
           "{} is not an IDX image file (no 0x00000803 header)", source);
  IdxImages images;
  images.count = big_endian(bytes, 4);
  images.rows = big_endian(bytes, 8);
  images.cols = big_endian(bytes, 12);
  VQ_CHECK(images.rows >= 1 && images.cols >= 1 && images.rows <= kMaxImageSide &&
               images.cols <= kMaxImageSide,
           "{}: images of {}x{} pixels (each side must be in [1, {}])", source, images.rows,
           images.cols, kMaxImageSide);
  // count < 2^32 and rows * cols <= 2^28: the product cannot overflow.
  const uint64_t expected = 16 + static_cast<uint64_t>(images.count * images.rows * images.cols);
  VQ_CHECK(bytes.size() == expected, "{} is truncated or damaged: {} bytes for {} images of {}x{}",
           source, bytes.size(), images.count, images.rows, images.cols);
  images.pixels.assign(bytes.begin() + 16, bytes.end());
  return images;
}

std::vector<uint8_t> parse_idx_labels(const std::string& bytes, const std::string& source) {
  VQ_CHECK(bytes.size() >= 8 && big_endian(bytes, 0) == 0x801,
           "{} is not an IDX label file (no 0x00000801 header)", source);
  const uint32_t n = big_endian(bytes, 4);
  VQ_CHECK(bytes.size() == 8 + uint64_t{n}, "{} is truncated or damaged: {} bytes for {} labels",
           source, bytes.size(), n);
  return std::vector<uint8_t>(bytes.begin() + 8, bytes.end());
}

}  // namespace vq::train
