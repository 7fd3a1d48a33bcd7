// Reading files that may be hostile, and replacing files atomically.
//
// Reading refuses folders, unreadable files and files above a size limit before allocating.
// Writing goes to a temporary file in the same folder, which is flushed to disk (fsync) and then
// renamed over the target, so a reader, a crash or a kill -9 at any instant sees either the old
// file or the new one, never a half-written one. A full disk (or a file-size limit) is an error
// naming the file, and the old file stays.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace vq::nn {

// The whole file; `what` names the kind of file in errors ("image", "safetensors file").
std::string read_file(const std::string& path, uint64_t max_bytes, const std::string& what);

// Parts of a file by offset, for formats whose header says where things are (safetensors): memory
// stays near what is read. Opening makes the same checks as read_file; a read past the end (the
// file shrank) is an error naming the file.
class FileReader {
 public:
  FileReader(const std::string& path, uint64_t max_bytes, const std::string& what);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;
  uint64_t size() const { return size_; }
  void read_at(uint64_t offset, uint64_t n, void* dst) const;
  std::string read_at(uint64_t offset, uint64_t n) const;

 private:
  std::string path_, what_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Writes `bytes` to `path` atomically. Throws vq::Error naming the path when anything fails; the
// previous file stays intact then. Temporary files that killed writers left next to `path`
// (".NAME.tmp.PID" of a process that no longer runs) are removed.
void write_file_atomically(const std::string& path, std::string_view bytes);

}  // namespace vq::nn
