#include "trainers/data/image.h"

#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "autograd/error.h"
#include "nn/atomic_file.h"

namespace vq::train {

Image8 decode_image(const std::string& path, int64_t channels) {
  int w = 0, h = 0, found = 0;
  uint8_t* data = stbi_load(path.c_str(), &w, &h, &found, static_cast<int>(channels));
  VQ_CHECK(data != nullptr, "cannot decode image '{}': {}", path,
           stbi_failure_reason() ? stbi_failure_reason() : "unknown error");
  Image8 img{w, h, channels,
             std::vector<uint8_t>(data, data + static_cast<size_t>(w) * h * channels)};
  stbi_image_free(data);
  VQ_CHECK(w > 0 && h > 0, "image '{}' is empty ({}x{})", path, w, h);
  return img;
}

Image8 resize_and_crop(const Image8& image, int64_t size) {
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
  const int64_t x0 = (src.width - size) / 2, y0 = (src.height - size) / 2, C = src.channels;
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
  nn::write_file_atomically(path, [&](std::ostream& out) {
    out.write(png.data(), static_cast<std::streamsize>(png.size()));
  });
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
