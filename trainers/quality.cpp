#include "trainers/quality.h"

#include <filesystem>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "trainers/metrics.h"

namespace vq::train {
namespace {

struct QualityMetric {
  const char* name;
  const char* label;
  double ImageQuality::*value;
};
constexpr QualityMetric kQualityMetrics[] = {
    {"l1", "L1", &ImageQuality::l1},
    {"stlpips_vgg", "ST-LPIPS VGG", &ImageQuality::stlpips_vgg},
    {"stlpips_alex", "ST-LPIPS AlexNet", &ImageQuality::stlpips_alex}};

const QualityMetric& quality_metric_named(const std::string& name) {
  for (const QualityMetric& m : kQualityMetrics) {
    if (name == m.name) return m;
  }
  throw Error(fmt::format("--best_metric must be l1, stlpips_vgg or stlpips_alex, got '{}'", name));
}

}  // namespace

std::string quality_metric_label(const std::string& name) {
  return quality_metric_named(name).label;
}

double quality_metric(const ImageQuality& q, const std::string& name) {
  return q.*quality_metric_named(name).value;
}

QualityMeter::QualityMeter(int64_t stlpips_images, int64_t image_size, Device device)
    : stlpips_images_(stlpips_images) {
  if (stlpips_images == 0) {
    unavailable_ = "not measured (0 images asked for)";
    return;
  }
  for (const char* name : {"stlpips-vgg", "stlpips-alex"}) {
    if (!std::filesystem::exists(models::perceptual_weights_file(name))) {
      unavailable_ = fmt::format(
          "not measured: {} is not installed (scripts/setup.sh installs it, or set "
          "VQ_WEIGHTS_DIR)",
          models::perceptual_weights_file(name));
      return;
    }
  }
  vgg_ = models::PerceptualLoss::from_weights("stlpips-vgg");
  alex_ = models::PerceptualLoss::from_weights("stlpips-alex");
  const int64_t needed = std::max(vgg_->min_image_size(), alex_->min_image_size());
  if (image_size < needed) {
    unavailable_ = fmt::format("not measured: images are {}x{}, ST-LPIPS needs at least {}x{}",
                               image_size, image_size, needed, needed);
    vgg_.reset();
    alex_.reset();
    return;
  }
  vgg_->to(device);
  alex_->to(device);
}

std::vector<ImageQuality> QualityMeter::add(const Tensor& reconstruction, const Tensor& original,
                                            const std::vector<int64_t>* positions) {
  NoGradGuard no_grad;
  const Tensor recon = reconstruction.cpu(), x = original.cpu();
  const int64_t N = recon.size(0);
  // SSIM's 11x11 window needs images at least that large; smaller ones get NaN (JSON null).
  const bool ssim_fits = recon.dim() == 4 && recon.size(2) >= 11 && recon.size(3) >= 11;
  const auto psnr = psnr_per_image(recon, x);
  const auto ssim = ssim_fits ? ssim_per_image(recon, x) : std::vector<double>(N, NAN);
  const auto l1 = vq::mean(abs(sub(recon, x)).reshape({N, -1}), {1}).to_vector<double>();
  std::vector<ImageQuality> out(N);
  for (int64_t i = 0; i < N; ++i) {
    out[i].l1 = l1[i];
    out[i].psnr = psnr[i];
    out[i].ssim = ssim[i];
  }
  int64_t wanted = stlpips_images_ < 0 ? N : stlpips_images_ - stlpips_measured_;
  if (positions != nullptr && stlpips_images_ >= 0) {  // ascending: those below the limit lead
    wanted = std::count_if(positions->begin(), positions->end(),
                           [&](int64_t p) { return p < stlpips_images_; });
  }
  const int64_t n = vgg_ ? std::clamp<int64_t>(wanted, 0, N) : 0;
  if (n > 0) {
    const Device device = vgg_->parameters().at(0).device();
    const Tensor a = recon.narrow(0, 0, n).to(device), b = x.narrow(0, 0, n).to(device);
    const auto vgg = vgg_->forward(a, b).reshape({-1}).to_vector<double>();
    const auto alex = alex_->forward(a, b).reshape({-1}).to_vector<double>();
    for (int64_t i = 0; i < n; ++i) {
      out[i].stlpips_vgg = vgg[i];
      out[i].stlpips_alex = alex[i];
      vgg_sum_ += vgg[i];
      alex_sum_ += alex[i];
    }
    stlpips_measured_ += n;
  }
  for (const ImageQuality& q : out) {
    l1_sum_ += q.l1;
    psnr_sum_ += q.psnr;
    ssim_sum_ += q.ssim;
  }
  images_ += N;
  return out;
}

void QualityMeter::all_reduce(dist::Communicator& comm) {
  const Tensor sums =
      from_vector<double>({l1_sum_, psnr_sum_, ssim_sum_, vgg_sum_, alex_sum_,
                           static_cast<double>(images_), static_cast<double>(stlpips_measured_)},
                          {7});
  comm.all_reduce_sum(sums);
  const auto v = sums.to_vector<double>();
  l1_sum_ = v[0];
  psnr_sum_ = v[1];
  ssim_sum_ = v[2];
  vgg_sum_ = v[3];
  alex_sum_ = v[4];
  images_ = std::llround(v[5]);
  stlpips_measured_ = std::llround(v[6]);
}

void QualityMeter::reset() {
  images_ = stlpips_measured_ = 0;
  l1_sum_ = psnr_sum_ = ssim_sum_ = vgg_sum_ = alex_sum_ = 0;
}

ImageQuality QualityMeter::mean() const {
  ImageQuality m;
  const double n = static_cast<double>(std::max<int64_t>(images_, 1));
  m.l1 = l1_sum_ / n;
  m.psnr = psnr_sum_ / n;
  m.ssim = ssim_sum_ / n;
  if (stlpips_measured_ > 0) {
    m.stlpips_vgg = vgg_sum_ / static_cast<double>(stlpips_measured_);
    m.stlpips_alex = alex_sum_ / static_cast<double>(stlpips_measured_);
  }
  return m;
}

std::string QualityMeter::stlpips_description() const {
  if (!vgg_) return "ST-LPIPS " + unavailable_;
  const std::string count =
      stlpips_images_ < 0 ? "every image" : fmt::format("the first {} images", stlpips_images_);
  return fmt::format("ST-LPIPS (VGG16 and AlexNet, shift-tolerant LPIPS) on {}", count);
}

}  // namespace vq::train
