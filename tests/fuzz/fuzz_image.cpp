// Image decoding (stb, compiled with our flags and only the formats we accept) and the
// preprocessing every training image goes through: resize and crop to the model's size, to float.
// The first byte chooses grey or RGB and the size.
#include <vector>

#include "fuzz_util.h"
#include "trainers/data/image.h"

namespace {

void parse(const std::string& input) {
  if (input.empty()) return;
  const int64_t channels = input[0] & 1 ? 3 : 1;
  const int64_t size = 8 << ((input[0] >> 1) & 3);  // 8, 16, 32 or 64
  const vq::train::Image8 image = vq::train::decode_image_bytes(input.substr(1), "input", channels);
  const vq::train::Image8 square = vq::train::resize_and_crop(image, size);
  std::vector<float> out(static_cast<size_t>(channels * size * size));
  vq::train::to_float_chw(square, (input[0] & 8) != 0, out.data());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return vq::fuzz::run_one(data, size, parse);
}
