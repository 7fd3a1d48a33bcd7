// The safetensors reader that works by offset (vq_inspect, the checkpoint and weight loaders): the
// input becomes a file, whose header is read alone and then whose tensors are read where the
// header says, every other one skipped (the filtered load the tools use).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "fuzz_util.h"
#include "nn/safetensors.h"

namespace {

void read_as_file(const std::string& bytes) {
  static const std::string path = (std::filesystem::temp_directory_path() /
                                   ("fuzz_safetensors_file." + std::to_string(::getpid())))
                                      .string();
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
  (void)vq::nn::describe_safetensors(vq::nn::read_safetensors_index(path));
  bool keep = false;
  (void)vq::nn::load_safetensors(path, [&](const std::string&) { return keep = !keep; });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return vq::fuzz::run_one(data, size, read_as_file);
}
