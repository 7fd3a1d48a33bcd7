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
  // A few bytes can declare an image within the real limit (64 Mi pixels) that takes ~1 s to
  // decode and resize in a release build but ~50 s under the sanitizers (a 75-byte TGA of
  // 12032x4096, corpus/image/regression-a67dd63707df), which libFuzzer reports as a hang: the
  // fuzzer decodes at most 4 Mi pixels (the header checks run either way).
  const vq::train::Image8 image =
      vq::train::decode_image_bytes(input.substr(1), "input", channels, int64_t{1} << 22);
  const vq::train::Image8 square = vq::train::resize_and_crop(image, size);
  std::vector<float> out(static_cast<size_t>(channels * size * size));
  vq::train::to_float_chw(square, (input[0] & 8) != 0, out.data());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return vq::fuzz::run_one(data, size, parse);
}
