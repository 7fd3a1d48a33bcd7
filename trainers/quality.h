// Reconstruction quality image by image: L1, PSNR and SSIM (metrics.h), and the LPIPS-family
// distance ST-LPIPS (shift-tolerant LPIPS) with both networks scripts/setup.sh installs: VGG16,
// which training may also use as its perceptual loss (a run that optimised it is flattered by
// it), and AlexNet, which no run trains on. ST-LPIPS VGG16 costs about 18 ms per 28x28 image
// pair on 2 cores, so it is measured on the first `stlpips_images` images only.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "models/perceptual.h"
#include "nn/dist/communicator.h"

namespace vq::train {

struct ImageQuality {
  double l1 = 0, psnr = 0, ssim = 0;             // ssim NaN for images below SSIM's 11x11 window
  double stlpips_vgg = NAN, stlpips_alex = NAN;  // NaN: not measured
};

// The numbers --best_metric may choose ("l1", "stlpips_vgg", "stlpips_alex"; lower is better):
// how a report names one (throws listing the choices for any other name), and its value.
std::string quality_metric_label(const std::string& name);
double quality_metric(const ImageQuality& q, const std::string& name);

class QualityMeter {
 public:
  // `stlpips_images`: how many images (the first ones added) get ST-LPIPS; 0: none, -1: all.
  // `image_size`: the side of the images to come, to say up front if ST-LPIPS cannot take them.
  // Throws if the installed weights are damaged; absent weights only leave ST-LPIPS out.
  QualityMeter(int64_t stlpips_images, int64_t image_size, Device device);
  // Per image of two batches in [-1, 1] of one shape. `positions` (ascending), when given, are
  // the images' places in the whole pass: ST-LPIPS measures those below `stlpips_images` (each
  // rank of a data-parallel run sees only its share of every batch).
  std::vector<ImageQuality> add(const Tensor& reconstruction, const Tensor& original,
                                const std::vector<int64_t>* positions = nullptr);
  // Sums what every rank measured (call once, after the last add()).
  void all_reduce(dist::Communicator& comm);
  void reset();  // forgets the images added (keeps the networks)
  // Means over the images added (ST-LPIPS over those that had it; NaN if none did).
  ImageQuality mean() const;
  int64_t images() const { return images_; }
  int64_t stlpips_measured() const { return stlpips_measured_; }
  bool measures_stlpips() const { return vgg_ != nullptr; }
  // Which ST-LPIPS networks measure how many images, or why none do (one line).
  std::string stlpips_description() const;

 private:
  int64_t stlpips_images_;
  std::shared_ptr<models::PerceptualLoss> vgg_, alex_;
  std::string unavailable_;  // why ST-LPIPS is not measured, when it is not
  int64_t images_ = 0, stlpips_measured_ = 0;
  double l1_sum_ = 0, psnr_sum_ = 0, ssim_sum_ = 0, vgg_sum_ = 0, alex_sum_ = 0;
};

}  // namespace vq::train
