#include "trainers/data/image.h"

#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <memory>

#include "autograd/error.h"
#include "nn/file_io.h"

namespace vq::train {

namespace {

void check_image_size(int64_t w, int64_t h, const std::string& source,
                      int64_t max_pixels = kMaxImagePixels) {
  VQ_CHECK(w <= kMaxImageSide && h <= kMaxImageSide && w * h <= max_pixels,
           "image '{}' is {}x{}, above the limits of {} pixels a side (kMaxImageSide) and {} "
           "pixels{}",
           source, w, h, kMaxImageSide, max_pixels,
           max_pixels == kMaxImagePixels ? " (kMaxImagePixels)" : "");
}

// stb refuses a PNG above 2^30 pixel bytes while reading its header, but then reports only that
// no format fits ("unknown image type"); the size a PNG declares is read here for a clear error.
void check_declared_png_size(const std::string& bytes, const std::string& source) {
  if (bytes.size() < 24 || bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0 ||
      bytes.compare(12, 4, "IHDR") != 0)
    return;
  const auto be32 = [&](size_t at) {
    int64_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = v << 8 | static_cast<uint8_t>(bytes[at + i]);
    return v;
  };
  check_image_size(be32(16), be32(20), source);
}

// Debian 12's stb_image (2.27) trusts the code counts of a JPEG Huffman table (DHT segment): their
// sum may reach 16 x 255, and it writes that many entries into tables of 257 and 256 bytes: a
// heap overflow that a 10-byte file triggers (found by tests/fuzz/fuzz_image; stb 2.28 checks the
// sum). The segments are walked here as stb reads them, and a table of more than 256 codes (the
// JPEG limit) is refused before stb sees the file.
void check_jpeg_huffman_tables(const std::string& bytes, const std::string& source) {
  const auto byte = [&](size_t at) -> uint8_t {
    return at < bytes.size() ? static_cast<uint8_t>(bytes[at]) : 0;
  };
  // stb takes any run of 0xFF fill bytes before a marker, the first one (SOI, 0xD8) included.
  size_t at = 1;
  while (byte(0) == 0xFF && at < bytes.size() && byte(at) == 0xFF) ++at;
  if (byte(0) != 0xFF || byte(at) != 0xD8) return;  // not a JPEG
  at += 1;
  while (at + 1 < bytes.size()) {
    const uint8_t marker = byte(at + 1);
    // Outside a marker (entropy-coded data), fill bytes, stuffed 0xFF00, restarts, TEM, SOI.
    if (byte(at) != 0xFF || marker == 0xFF || marker == 0x00 || marker == 0x01 ||
        (marker >= 0xD0 && marker <= 0xD8)) {
      at += byte(at) == 0xFF && marker != 0xFF ? 2 : 1;
      continue;
    }
    if (marker == 0xD9) return;  // end of image
    const size_t length = size_t{byte(at + 2)} << 8 | byte(at + 3);
    if (marker == 0xC4) {
      // As stb: tables follow one another while the segment has bytes left (stb reads zeros past
      // the end of the file).
      size_t table = at + 4;
      for (int64_t left = static_cast<int64_t>(length) - 2; left > 0 && table < bytes.size();) {
        size_t codes = 0;
        for (size_t i = 1; i <= 16; ++i) codes += byte(table + i);
        VQ_CHECK(codes <= 256,
                 "cannot decode image '{}': corrupt JPEG (a Huffman table declares {} codes; at "
                 "most 256)",
                 source, codes);
        left -= static_cast<int64_t>(17 + codes);
        table += 17 + codes;
      }
    }
    at += 2 + length;
  }
}

// Debian's stb 2.27 trusts binary PNM headers (P5 grey, P6 RGB) too much: it reads the numbers
// into an int without an overflow check (undefined behaviour, found by tests/fuzz/fuzz_image), a
// 16-bit file (maxval above 255) comes out byte-swapped on little-endian machines, and a maxval
// below 255 is not rescaled, so the last two would train on wrong pixels without a word. The
// header (width, height, maxval, with '#' comments as stb allows) is read here first: sizes are
// checked against our limits, only maxval 255 is accepted, and the pixel bytes must be present.
void check_pnm_header(const std::string& bytes, const std::string& source) {
  if (bytes.size() < 2 || bytes[0] != 'P' || (bytes[1] != '5' && bytes[1] != '6')) return;
  size_t at = 2;
  int64_t numbers[3] = {0, 0, 0};
  for (int field = 0; field < 3; ++field) {
    while (at < bytes.size() &&
           (std::isspace(static_cast<unsigned char>(bytes[at])) != 0 || bytes[at] == '#')) {
      if (bytes[at] == '#') {
        while (at < bytes.size() && bytes[at] != '\n' && bytes[at] != '\r') ++at;
      } else {
        ++at;
      }
    }
    int64_t digits = 0, value = 0;
    for (; at < bytes.size() && std::isdigit(static_cast<unsigned char>(bytes[at])) != 0; ++at) {
      value = std::min<int64_t>(value * 10 + (bytes[at] - '0'), int64_t{1} << 40);  // saturates
      ++digits;
    }
    if (digits == 0) return;  // a header cut short or malformed: stb reports it
    numbers[field] = value;
    if (field < 2) check_image_size(numbers[0], numbers[1], source);
  }
  VQ_CHECK(numbers[2] == 255,
           "cannot decode image '{}': a binary PNM with maxval {}; only 8-bit files with maxval "
           "255 are read correctly (convert it to PNG)",
           source, numbers[2]);
  // The samples start after the one whitespace byte that ends maxval. stb does not check that
  // they are all there: a truncated file would come out partly uninitialised.
  const int64_t needed = numbers[0] * numbers[1] * (bytes[1] == '6' ? 3 : 1);
  const int64_t present = static_cast<int64_t>(bytes.size()) - static_cast<int64_t>(at) - 1;
  VQ_CHECK(present >= needed, "cannot decode image '{}': truncated PNM ({} of {} pixel bytes)",
           source, std::max<int64_t>(present, 0), needed);
}

// Luminance as stb computes it (ITU-R BT.601 weights in 8-bit fixed point), so a colour file read
// as grey gives the values stb's own conversion would.
uint8_t luminance(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((r * 77 + g * 150 + b * 29) >> 8);
}

// stb decodes at the file's own channel count (`found`: grey, grey+alpha, RGB or RGBA); the
// conversion to the channels the model wants is done here. Asking stb to convert instead reads
// past its buffer for a 16-bit PNM in Debian's stb 2.27 (it converts the 16-bit samples with its
// 8-bit routine; found by tests/fuzz/fuzz_image). Alpha is dropped, as stb does.
std::vector<uint8_t> convert_channels(const uint8_t* pixels, int64_t count, int found,
                                      int64_t channels) {
  std::vector<uint8_t> out(static_cast<size_t>(count * channels));
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* p = pixels + i * found;
    uint8_t* o = out.data() + i * channels;
    if (found >= 3 && channels == 1) {
      o[0] = luminance(p[0], p[1], p[2]);
    } else if (found >= 3) {
      std::memcpy(o, p, 3);
    } else {
      std::memset(o, p[0], static_cast<size_t>(channels));  // grey, replicated for RGB
    }
  }
  return out;
}

}  // namespace

Image8 decode_image_bytes(const std::string& bytes, const std::string& source, int64_t channels,
                          int64_t max_pixels) {
  VQ_CHECK(channels == 1 || channels == 3, "decode_image: channels must be 1 or 3, got {}",
           channels);
  VQ_CHECK(bytes.size() <= kMaxImageFileBytes && bytes.size() <= INT32_MAX,
           "image '{}' has {} bytes, above the limit of {} bytes (kMaxImageFileBytes)", source,
           bytes.size(), kMaxImageFileBytes);
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int length = static_cast<int>(bytes.size());
  check_declared_png_size(bytes, source);
  check_jpeg_huffman_tables(bytes, source);
  check_pnm_header(bytes, source);
  int w = 0, h = 0, found = 0;
  VQ_CHECK(stbi_info_from_memory(data, length, &w, &h, &found) == 1, "cannot decode image '{}': {}",
           source, stbi_failure_reason() ? stbi_failure_reason() : "not an image");
  VQ_CHECK(w > 0 && h > 0, "image '{}' is empty ({}x{})", source, w, h);
  check_image_size(w, h, source, std::min(max_pixels, kMaxImagePixels));
  const std::unique_ptr<uint8_t, void (*)(void*)> pixels(
      stbi_load_from_memory(data, length, &w, &h, &found, 0), stbi_image_free);
  VQ_CHECK(pixels != nullptr, "cannot decode image '{}': {}", source,
           stbi_failure_reason() ? stbi_failure_reason() : "unknown error");
  VQ_CHECK(w > 0 && h > 0 && found >= 1 && found <= 4,
           "image '{}' decoded to {}x{} pixels of {} channels", source, w, h, found);
  return Image8{w, h, channels, convert_channels(pixels.get(), int64_t{w} * h, found, channels)};
}

Image8 decode_image(const std::string& path, int64_t channels) {
  return decode_image_bytes(nn::read_file(path, kMaxImageFileBytes, "image"), path, channels);
}

Image8 resize_and_crop(const Image8& image, int64_t size, double crop_x, double crop_y) {
  Image8 src = image;
  if (std::min(image.width, image.height) != size) {
    const double scale = static_cast<double>(size) / std::min(image.width, image.height);
    const int64_t w = std::max<int64_t>(size, std::llround(image.width * scale));
    const int64_t h = std::max<int64_t>(size, std::llround(image.height * scale));
    src = Image8{w, h, image.channels,
                 std::vector<uint8_t>(static_cast<size_t>(w * h * image.channels))};
    const int ok = stbir_resize_uint8(image.pixels.data(), static_cast<int>(image.width),
                                      static_cast<int>(image.height), 0, src.pixels.data(),
                                      static_cast<int>(w), static_cast<int>(h), 0,
                                      static_cast<int>(image.channels));
    VQ_CHECK(ok == 1, "resizing a {}x{} image to {}x{} failed", image.width, image.height, w, h);
  }
  // The centre (0.5) rounds down, as the crop did before crops could move.
  auto offset = [](int64_t slack, double at) {
    return at == 0.5 ? slack / 2 : std::clamp<int64_t>(std::llround(at * slack), 0, slack);
  };
  const int64_t x0 = offset(src.width - size, crop_x), y0 = offset(src.height - size, crop_y);
  const int64_t C = src.channels;
  Image8 out{size, size, C, std::vector<uint8_t>(static_cast<size_t>(size * size * C))};
  for (int64_t y = 0; y < size; ++y) {
    std::memcpy(&out.pixels[y * size * C], &src.pixels[((y0 + y) * src.width + x0) * C], size * C);
  }
  return out;
}

void to_float_chw(const Image8& image, bool flip, float* out) {
  const int64_t W = image.width, H = image.height, C = image.channels;
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t y = 0; y < H; ++y) {
      for (int64_t x = 0; x < W; ++x) {
        const int64_t sx = flip ? W - 1 - x : x;
        out[(c * H + y) * W + x] = image.pixels[(y * W + sx) * C + c] / 127.5f - 1.0f;
      }
    }
  }
}

void write_png_grid(const std::string& path, const std::vector<const float*>& images,
                    int64_t channels, int64_t size, int64_t cols) {
  VQ_CHECK(!images.empty() && cols > 0, "write_png_grid: nothing to write to '{}'", path);
  constexpr int64_t gap = 2;
  const int64_t rows = (static_cast<int64_t>(images.size()) + cols - 1) / cols;
  const int64_t W = cols * size + (cols + 1) * gap, H = rows * size + (rows + 1) * gap;
  std::vector<uint8_t> canvas(static_cast<size_t>(W * H * channels), 255);
  for (size_t i = 0; i < images.size(); ++i) {
    const int64_t ox = gap + (static_cast<int64_t>(i) % cols) * (size + gap);
    const int64_t oy = gap + (static_cast<int64_t>(i) / cols) * (size + gap);
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t y = 0; y < size; ++y) {
        for (int64_t x = 0; x < size; ++x) {
          const float v =
              std::clamp((images[i][(c * size + y) * size + x] + 1.0f) * 127.5f, 0.0f, 255.0f);
          canvas[((oy + y) * W + ox + x) * channels + c] = static_cast<uint8_t>(std::lround(v));
        }
      }
    }
  }
  std::string png;
  const auto append = [](void* context, void* data, int n) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), n);
  };
  const int ok = stbi_write_png_to_func(append, &png, static_cast<int>(W), static_cast<int>(H),
                                        static_cast<int>(channels), canvas.data(),
                                        static_cast<int>(W * channels));
  VQ_CHECK(ok != 0, "encoding the PNG for '{}' failed", path);
  nn::write_file_atomically(path, png);
}

void write_comparison_grid(const std::string& path, const Tensor& inputs,
                           const Tensor& reconstructions) {
  VQ_CHECK(
      inputs.shape() == reconstructions.shape() && inputs.dim() == 4,
      "write_comparison_grid: inputs {} and reconstructions {} must be [N, C, S, S] of one shape",
      shape_str(inputs.shape()), shape_str(reconstructions.shape()));
  const Tensor a = inputs.to(DType::Float32).cpu().contiguous(),
               b = reconstructions.to(DType::Float32).cpu().contiguous();
  const int64_t n = a.size(0), C = a.size(1), S = a.size(2), cols = std::min<int64_t>(8, n);
  std::vector<const float*> cells;
  for (int64_t row = 0; row * cols < n; ++row) {
    for (const Tensor* t : std::initializer_list<const Tensor*>{&a, &b}) {
      for (int64_t i = row * cols; i < std::min(n, (row + 1) * cols); ++i)
        cells.push_back(t->data<float>() + i * C * S * S);
    }
  }
  write_png_grid(path, cells, C, S, cols);
}

}  // namespace vq::train
