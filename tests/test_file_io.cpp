// Crash safety of checkpoint writes, proven by killing real processes: a child writes a new
// checkpoint over an old one and dies part-way (at a chosen byte, through a file-size limit whose
// signal kills it; or by SIGKILL at a random instant while it saves again and again). After every
// death the file must load and be exactly the old or the new checkpoint. A full disk (the size
// limit with its signal ignored) must give an error naming the file and keep the old one. Plus the
// limits and errors of reading files.
//
// The children only write bytes prepared by the parent (no tensors, no OpenMP after fork()).
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "nn/checkpoint.h"
#include "nn/file_io.h"
#include "test_util.h"

namespace vq::nn {
namespace {

namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) { return test::temp_path("file_io_" + name); }

// The bytes of a checkpoint whose every weight is `value` (42,024 float32 values: 168 KB), as the
// trainer writes it.
std::string checkpoint_bytes(const std::string& dir, float value, int64_t step) {
  const std::string path = dir + "/prepare.safetensors";
  TrainingState state;
  state.step = step;
  save_checkpoint(
      path,
      {{"", {{"encoder.w", full({200, 200}, value)}, {"codebook", full({64, 16}, value)}}},
       {"optimizer.g.", {{"exp_avg", full({1000}, value)}}}},
      state);
  std::string bytes = read_file(path, 1 << 30, "checkpoint");
  fs::remove(path);
  return bytes;
}

// Runs write_file_atomically(path, bytes) in a child process that `prepare` sets up first;
// returns the child's wait status.
int write_in_child(const std::string& path, const std::string& bytes,
                   const std::function<void()>& prepare) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    prepare();
    try {
      write_file_atomically(path, bytes);
    } catch (const Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      ::_exit(1);
    }
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

void limit_file_size(uint64_t bytes) {
  const rlimit limit{bytes, bytes};
  ::setrlimit(RLIMIT_FSIZE, &limit);
}

// A checkpoint file holding the "old" checkpoint (step 1), and the bytes of a "new" one (step 2)
// that the tests try to write over it.
struct OldAndNew {
  explicit OldAndNew(const std::string& name)
      : dir(fresh_dir(name)),
        path(dir + "/run.last.safetensors"),
        old_bytes(checkpoint_bytes(dir, 1.0f, 1)),
        new_bytes(checkpoint_bytes(dir, 2.0f, 2)) {
    write_file_atomically(path, old_bytes);
  }
  // Which of the two the file holds (loading it fully, with every check); fails the test if it is
  // neither.
  std::string holds() const {
    const LoadedCheckpoint ck = load_checkpoint(path);
    const std::string bytes = read_file(path, 1 << 30, "checkpoint");
    if (bytes == old_bytes && ck.state.step == 1) return "old";
    if (bytes == new_bytes && ck.state.step == 2) return "new";
    ADD_FAILURE() << path << " holds neither checkpoint (" << bytes.size() << " bytes)";
    return "neither";
  }
  std::string dir, path, old_bytes, new_bytes;
};

TEST(CrashSafety, KilledAtAnyByteOfTheWriteLeavesTheOldCheckpoint) {
  const OldAndNew files("bytes");
  const std::string& path = files.path;
  // 40 cut points across the file, including the first and the last byte: the child is killed by
  // SIGXFSZ (default action: terminate at once) when its write crosses the limit.
  for (int i = 0; i < 40; ++i) {
    const uint64_t cut = i == 39 ? files.new_bytes.size() - 1 : files.new_bytes.size() * i / 39;
    const int status = write_in_child(path, files.new_bytes, [&] { limit_file_size(cut); });
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ)
        << "the child was to die at byte " << cut << "; status " << status;
    EXPECT_EQ(files.holds(), "old") << "killed at byte " << cut;
  }
  // The killed writers left their temporary files; the next save removes them.
  write_file_atomically(path, files.new_bytes);
  EXPECT_EQ(files.holds(), "new");
  for (const auto& entry : fs::directory_iterator(files.dir)) {
    EXPECT_EQ(entry.path().filename().string(), "run.last.safetensors")
        << "left behind: " << entry.path();
  }
}

TEST(CrashSafety, SigkillAtRandomInstantsLeavesOneCompleteCheckpoint) {
  const OldAndNew files("sigkill");
  const std::string& path = files.path;
  std::mt19937 rng(7);
  std::map<std::string, int> seen;
  for (int i = 0; i < 30; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {  // saves the two checkpoints in turn until killed
      for (int n = 0;; ++n) write_file_atomically(path, n % 2 ? files.old_bytes : files.new_bytes);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ++seen[files.holds()];
  }
  EXPECT_EQ(seen.count("neither"), 0u);
}

TEST(CrashSafety, DiskFullIsAClearErrorAndKeepsTheOldCheckpoint) {
  const OldAndNew files("full");
  const std::string& path = files.path;
  // With SIGXFSZ ignored, a write past the limit fails with EFBIG, as a full disk fails with
  // ENOSPC: the writer must notice, say so, remove its temporary file and keep the old one.
  testing::internal::CaptureStderr();
  const int status = write_in_child(path, files.new_bytes, [] {
    ::signal(SIGXFSZ, SIG_IGN);
    limit_file_size(4096);
  });
  const std::string message = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status;
  // (The child's stderr is the test's: CaptureStderr redirects the descriptor it inherits.)
  EXPECT_NE(message.find("failed after 4096 of"), std::string::npos) << message;
  EXPECT_NE(message.find("File too large"), std::string::npos) << message;
  EXPECT_NE(message.find("'" + path + "' was left as it was"), std::string::npos) << message;
  EXPECT_EQ(files.holds(), "old");
  EXPECT_EQ(std::distance(fs::directory_iterator(files.dir), fs::directory_iterator()), 1)
      << "the temporary file was not removed";
}

TEST(FileIo, ReadingRefusesMissingFilesFoldersAndFilesAboveTheLimit) {
  const std::string dir = fresh_dir("read");
  EXPECT_VQ_ERROR(read_file(dir + "/none", 10, "image"), "image '" + dir + "/none' does not exist");
  EXPECT_VQ_ERROR(read_file(dir, 10, "image"), "is not a regular file");
  write_file_atomically(dir + "/eleven", "eleven byte");
  EXPECT_EQ(read_file(dir + "/eleven", 11, "x"), "eleven byte");
  EXPECT_VQ_ERROR(read_file(dir + "/eleven", 10, "image"),
                  "has 11 bytes, above the limit of 10 bytes");
  EXPECT_VQ_ERROR(write_file_atomically(dir + "/no/such/folder/f", "x"),
                  "the folder '" + dir + "/no/such/folder' does not exist");
}

TEST(FileIo, LeavesTheTemporaryFilesOfLiveWritersAlone) {
  const std::string dir = fresh_dir("live");
  // A temp file named after a running process (this one's parent) belongs to a writer at work.
  const std::string live = dir + "/.f.tmp." + std::to_string(::getppid());
  const std::string other = dir + "/.g.tmp.1";  // another target's: not ours to touch
  write_file_atomically(live, "writing");
  write_file_atomically(other, "writing");
  write_file_atomically(dir + "/f", "done");
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other));
}

}  // namespace
}  // namespace vq::nn
