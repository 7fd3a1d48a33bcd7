// The safetensors reader: header length, JSON header, entries, offsets, data; and the listing
// vq_inspect prints of whatever it accepted.
#include "fuzz_util.h"
#include "nn/safetensors.h"

namespace {

void parse(const std::string& bytes) {
  (void)vq::nn::parse_safetensors(bytes, "input");
  (void)vq::nn::describe_safetensors(vq::nn::parse_safetensors_index(bytes, bytes.size(), "input"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return vq::fuzz::run_one(data, size, parse);
}
