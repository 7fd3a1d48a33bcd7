// The throwing half of check.h: formats CUDA, cuBLAS and cuDNN failures into vq::Error.
// Compiled by the host compiler, so it may use fmt (the .cu files only see the declarations).
// No retries or recovery here: callers decide (the allocator retries out-of-memory itself).
#include "cuda/check.h"

#include <cudnn.h>
#include <fmt/format.h>

#include "autograd/error.h"

namespace vq::cuda {

void throw_call_error(const char* library, const char* call, const char* file, int line,
                      const char* name, const char* message) {
  throw Error(fmt::format("{} call failed: {} at {}:{}: {}: {}", library, call, file, line,
                          name ? name : "?", message && *message ? message : "(no message)"));
}

void throw_error(const char* message) { throw Error(message); }

const char* cudnn_last_message() {
  // One buffer per thread: the message is read right away by throw_call_error.
  thread_local char buffer[512];
  buffer[0] = '\0';
  cudnnGetLastErrorString(buffer, sizeof(buffer));
  return buffer;
}

}  // namespace vq::cuda
