#include "trainers/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace vq::train {

std::string format_duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

ProgressBar::ProgressBar(std::string label, int64_t total, int64_t line_every)
    : label_(std::move(label)),
      total_(total),
      line_every_(std::max<int64_t>(1, line_every)),
      tty_(isatty(fileno(stdout)) != 0),
      start_(std::chrono::steady_clock::now()) {}

void ProgressBar::draw(int64_t done, const std::string& status, bool final) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta =
      done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0.0;
  constexpr int width = 20;
  const int filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
  const std::string bar = std::string(filled, '#') + std::string(width - filled, '.');
  const std::string text =
      fmt::format("{} [{}] {}/{}  {}  {}", label_, bar, done, total_, status,
                  final ? "took " + format_duration(elapsed) : "ETA " + format_duration(eta));
  if (tty_) {
    std::printf("\r%s\x1b[K%s", text.c_str(), final ? "\n" : "");
  } else {
    std::printf("%s\n", text.c_str());
  }
  std::fflush(stdout);
}

void ProgressBar::update(int64_t done, const std::string& status) {
  if (tty_ || done % line_every_ == 0) draw(done, status, false);
}

void ProgressBar::finish(const std::string& status) { draw(total_, status, true); }

}  // namespace vq::train
