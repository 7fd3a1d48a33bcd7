// Image quality metrics on images in [-1, 1] (mapped to [0, 1] first, as is usual for PSNR/SSIM),
// and the append-only JSONL metrics log.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace vq::train {

// Per image of two [N, C, H, W] batches: 10 log10(1 / mse) on [0, 1]; capped at 100 dB for
// identical images.
std::vector<double> psnr_per_image(const Tensor& a, const Tensor& b);
// Per image: mean SSIM over channels with an 11x11 Gaussian window (sigma 1.5), C1 = 0.01^2,
// C2 = 0.03^2 (Wang et al. 2004), windows inside the image only.
std::vector<double> ssim_per_image(const Tensor& a, const Tensor& b);

// One JSON object per line; each line is flushed so a crash loses nothing already logged.
// For a run resumed at `step`: drops the lines of an existing log whose "step" is later (logged
// after the checkpoint, so they would be logged again) and any line that is not JSON (torn by a
// kill), so the log keeps one line per step. Rewrites the file atomically; a missing file is
// fine. Returns how many lines were dropped.
int64_t truncate_jsonl_after_step(const std::string& path, int64_t step);

class JsonlWriter {
 public:
  JsonlWriter(const std::string& path, bool append);
  void write(const std::string& json_object);

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace vq::train
