// The Fashion-MNIST reader: gzip decompression (with its output limit) and the IDX image and
// label formats.
#include "fuzz_util.h"
#include "trainers/data/idx.h"

namespace {

void parse(const std::string& input) {
  using namespace vq::train;
  const bool gzip = input.size() >= 2 && input[0] == '\x1f' && input[1] == '\x8b';
  // A small output limit here: the fuzzer must not spend its time inflating large outputs.
  const std::string bytes = gzip ? gunzip(input, "input", 1 << 24) : input;
  if (bytes.size() >= 4 && bytes[3] == '\x01') {
    (void)parse_idx_labels(bytes, "input");
  } else {
    (void)parse_idx_images(bytes, "input");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return vq::fuzz::run_one(data, size, parse);
}
