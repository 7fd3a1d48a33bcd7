// A one-line progress bar for long loops: on a terminal it redraws in place
// ("epoch 2/5 [########......] 20/50  loss 0.41  util 87% ...  61 img/s  ETA 0:32");
// elsewhere (logs, CI) it prints a line every `line_every` updates and at the end.
#pragma once

#include <chrono>
#include <string>

namespace vq::train {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, int64_t line_every);
  void update(int64_t done, const std::string& status);
  void finish(const std::string& status);

 private:
  void draw(int64_t done, const std::string& status, bool final);
  std::string label_;
  int64_t total_, line_every_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

std::string format_duration(double seconds);  // "1:02:03" or "2:03"

}  // namespace vq::train
