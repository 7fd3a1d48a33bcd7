#include "nn/file_io.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "autograd/error.h"

namespace vq::nn {

namespace fs = std::filesystem;

namespace {

// A file descriptor that is closed on every path out.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now, so that an error of close() (possible on network file systems) is not lost.
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

void fsync_path(const std::string& path, bool directory) {
  Fd fd(::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY));
  VQ_CHECK(fd.get() >= 0, "cannot open '{}' to flush it: {}", path, std::strerror(errno));
  VQ_CHECK(::fsync(fd.get()) == 0, "cannot flush '{}' to disk: {}", path, std::strerror(errno));
}

std::string temp_prefix(const fs::path& target) {
  return fmt::format(".{}.tmp.", target.filename().string());
}

// Removes the temporary files of writers of `target` that were killed (their process is gone).
void remove_stale_temps(const fs::path& folder, const fs::path& target) {
  const std::string prefix = temp_prefix(target);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid_text = name.substr(prefix.size());
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stoll(pid_text));
    if (pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) fs::remove(entry.path(), ec);
  }
}

}  // namespace

std::string read_file(const std::string& path, uint64_t max_bytes, const std::string& what) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  VQ_CHECK(fs::exists(status), "{} '{}' does not exist", what, path);
  VQ_CHECK(fs::is_regular_file(status), "{} '{}' is not a regular file", what, path);
  Fd fd(::open(path.c_str(), O_RDONLY));
  VQ_CHECK(fd.get() >= 0, "cannot open {} '{}': {}", what, path, std::strerror(errno));
  const off_t size = ::lseek(fd.get(), 0, SEEK_END);
  VQ_CHECK(size >= 0 && ::lseek(fd.get(), 0, SEEK_SET) == 0, "cannot read {} '{}': {}", what, path,
           std::strerror(errno));
  VQ_CHECK(static_cast<uint64_t>(size) <= max_bytes,
           "{} '{}' has {} bytes, above the limit of {} bytes for this kind of file", what, path,
           size, max_bytes);
  std::string bytes(static_cast<size_t>(size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    VQ_CHECK(n >= 0, "cannot read {} '{}': {}", what, path, std::strerror(errno));
    if (n == 0) break;  // the file shrank while we read it
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

FileReader::FileReader(const std::string& path, uint64_t max_bytes, const std::string& what)
    : path_(path), what_(what) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  VQ_CHECK(fs::exists(status), "{} '{}' does not exist", what, path);
  VQ_CHECK(fs::is_regular_file(status), "{} '{}' is not a regular file", what, path);
  fd_ = ::open(path.c_str(), O_RDONLY);
  VQ_CHECK(fd_ >= 0, "cannot open {} '{}': {}", what, path, std::strerror(errno));
  const off_t size = ::lseek(fd_, 0, SEEK_END);
  if (size < 0 || static_cast<uint64_t>(size) > max_bytes) {
    const int error = errno;
    ::close(fd_);
    VQ_CHECK(size >= 0, "cannot read {} '{}': {}", what, path, std::strerror(error));
    throw Error(
        fmt::format("{} '{}' has {} bytes, above the limit of {} bytes for this kind of file", what,
                    path, size, max_bytes));
  }
  size_ = static_cast<uint64_t>(size);
}

FileReader::~FileReader() {
  if (fd_ >= 0) ::close(fd_);
}

void FileReader::read_at(uint64_t offset, uint64_t n, void* dst) const {
  VQ_CHECK(offset <= size_ && n <= size_ - offset,
           "{} '{}': bytes [{}, {}) are past its end ({} bytes)", what_, path_, offset, offset + n,
           size_);
  char* out = static_cast<char*>(dst);
  uint64_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd_, out + done, n - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    VQ_CHECK(got >= 0, "cannot read {} '{}': {}", what_, path_, std::strerror(errno));
    VQ_CHECK(got > 0, "{} '{}' was truncated while it was read (it ends before byte {})", what_,
             path_, offset + done);
    done += static_cast<uint64_t>(got);
  }
}

std::string FileReader::read_at(uint64_t offset, uint64_t n) const {
  VQ_CHECK(offset <= size_ && n <= size_ - offset,
           "{} '{}': bytes [{}, {}) are past its end ({} bytes)", what_, path_, offset, offset + n,
           size_);
  std::string bytes(static_cast<size_t>(n), '\0');
  read_at(offset, n, bytes.data());
  return bytes;
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  const fs::path target(path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  VQ_CHECK(fs::is_directory(folder), "cannot write '{}': the folder '{}' does not exist", path,
           folder.string());
  remove_stale_temps(folder, target);
  const std::string temp = (folder / fmt::format("{}{}", temp_prefix(target), ::getpid())).string();
  try {
    Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    VQ_CHECK(fd.get() >= 0, "cannot create '{}': {}", temp, std::strerror(errno));
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      VQ_CHECK(n > 0, "writing '{}' failed after {} of {} bytes: {}; '{}' was left as it was", temp,
               done, bytes.size(), std::strerror(n < 0 ? errno : ENOSPC), path);
      done += static_cast<size_t>(n);
    }
    VQ_CHECK(::fsync(fd.get()) == 0, "cannot flush '{}' to disk: {}; '{}' was left as it was", temp,
             std::strerror(errno), path);
    VQ_CHECK(fd.close() == 0, "closing '{}' failed: {}; '{}' was left as it was", temp,
             std::strerror(errno), path);
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
