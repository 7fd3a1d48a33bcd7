// Image decoding and preprocessing for training: decode (PNG, JPEG, BMP, TGA, GIF, PNM via
// stb_image),
// convert to 1 (grey) or 3 (RGB) channels, resize the short side to the target size and crop the
// centre square, and scale to [-1, 1] as float CHW. Plus PNG writing of image grids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace vq::train {

// An 8-bit image, rows of interleaved channels (HWC).
struct Image8 {
  int64_t width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
};

// Limits on untrusted images, checked before anything is decoded: the file's size, then the
// dimensions its header declares (a 65535x65535 header would otherwise allocate 12 GiB).
inline constexpr uint64_t kMaxImageFileBytes = 256u << 20;
inline constexpr int64_t kMaxImageSide = 16384;
inline constexpr int64_t kMaxImagePixels = int64_t{64} << 20;

// Decodes a PNG, JPEG, BMP, TGA, GIF (first frame) or PNM file to `channels` channels. Throws
// vq::Error naming the path and the reason (stb's, or the limit exceeded).
Image8 decode_image(const std::string& path, int64_t channels);
// The same for bytes in memory; `source` names them in errors. `max_pixels` may lower the pixel
// limit (the image fuzzer does, to keep every input fast under the sanitizers).
Image8 decode_image_bytes(const std::string& bytes, const std::string& source, int64_t channels,
                          int64_t max_pixels = kMaxImagePixels);

// Short side to `size` (bilinear-ish filtering from stb_image_resize), then a size x size crop at
// (crop_x, crop_y) of the slack along each side: 0 the left/top edge, 0.5 the centre, 1 the
// right/bottom edge (taming's random crops draw them uniformly).
Image8 resize_and_crop(const Image8& image, int64_t size, double crop_x = 0.5, double crop_y = 0.5);

// HWC uint8 -> CHW float in [-1, 1], optionally mirrored left-right.
void to_float_chw(const Image8& image, bool flip, float* out);

// Writes float CHW images in [-1, 1] as a PNG grid (rows x cols, 2-pixel gaps). Atomic.
void write_png_grid(const std::string& path, const std::vector<const float*>& images,
                    int64_t channels, int64_t size, int64_t cols);

// Inputs above their reconstructions ([N, C, S, S] each, in [-1, 1]), in rows of up to 8: a row
// of inputs, then the row of their reconstructions.
void write_comparison_grid(const std::string& path, const Tensor& inputs,
                           const Tensor& reconstructions);

}  // namespace vq::train
