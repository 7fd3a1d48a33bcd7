#include "nn/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "autograd/error.h"

namespace vq::nn {

namespace {

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  VQ_CHECK(fd >= 0, "cannot open '{}' to flush it: {}", path, std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  VQ_CHECK(rc == 0, "cannot flush '{}' to disk: {}", path, std::strerror(err));
}

}  // namespace

void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  VQ_CHECK(fs::is_directory(folder), "cannot write '{}': the folder '{}' does not exist", path,
           folder.string());
  const std::string temp =
      (folder / fmt::format(".{}.tmp.{}", target.filename().string(), ::getpid())).string();
  try {
    {
      std::ofstream out(temp, std::ios::binary | std::ios::trunc);
      VQ_CHECK(out.good(), "cannot create '{}': {}", temp, std::strerror(errno));
      write(out);
      out.flush();
      VQ_CHECK(out.good(), "writing '{}' failed (disk full?)", temp);
    }
    fsync_path(temp, false);
    VQ_CHECK(::rename(temp.c_str(), path.c_str()) == 0, "cannot rename '{}' to '{}': {}", temp,
             path, std::strerror(errno));
    fsync_path(folder.string(), true);
  } catch (...) {
    std::error_code ignored;
    fs::remove(temp, ignored);
    throw;
  }
}

}  // namespace vq::nn
