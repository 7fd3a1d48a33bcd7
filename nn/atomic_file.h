// Atomic file replacement: the bytes go to a temporary file in the same folder, which is flushed
// to disk (fsync) and then renamed over the target, so a reader (or a crash) sees either the old
// file or the new one, never a half-written one.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>

namespace vq::nn {

// Calls write(stream) on a temporary file next to `path`, then publishes it atomically. Throws
// vq::Error naming the path when anything fails; the previous file stays intact then.
void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write);

}  // namespace vq::nn
