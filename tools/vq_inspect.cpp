// vq_inspect FILE: lists a safetensors file's tensors (name, dtype, shape, bytes), totals and
// metadata (training state and config of our checkpoints, pretty-printed).
#include <cstdio>
#include <string>

#include "nn/safetensors.h"

int main(int argc, char** argv) {
  std::string path;
  bool list = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: vq_inspect FILE [--summary]\n"
          "Lists the tensors of a safetensors file (model or checkpoint): name, dtype, shape and\n"
          "bytes, then totals and the metadata (training state, config).\n"
          "  --summary   totals and metadata only\n");
      return 0;
    }
    if (arg == "--summary") {
      list = false;
    } else if (path.empty() && arg.rfind("--", 0) != 0) {
      path = arg;
    } else {
      std::fprintf(stderr, "vq_inspect: unexpected argument '%s' (see --help)\n", arg.c_str());
      return 2;
    }
  }
  if (path.empty()) {
    std::fprintf(stderr, "vq_inspect: no file given (usage: vq_inspect FILE [--summary])\n");
    return 2;
  }
  try {
    // The header only: a checkpoint of any size is listed without reading its tensors.
    std::fputs(vq::nn::describe_safetensors(vq::nn::read_safetensors_index(path), list).c_str(),
               stdout);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vq_inspect: %s\n", e.what());
    return 1;
  }
  return 0;
}
