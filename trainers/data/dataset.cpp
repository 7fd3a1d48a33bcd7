#include "trainers/data/dataset.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <vector>

#include "autograd/error.h"
#include "autograd/generator.h"
#include "trainers/data/idx.h"
#include "trainers/data/image.h"

namespace vq::train {

namespace {

namespace fs = std::filesystem;

class FashionMnist : public Dataset {
 public:
  FashionMnist(const std::string& split, int64_t channels, int64_t size)
      : split_(split), channels_(channels), size_(size) {
    const std::string path = fmt::format("{}/{}-images-idx3-ubyte.gz", fashion_mnist_dir(),
                                         split == "train" ? "train" : "t10k");
    images_ = parse_idx_images(read_idx_file(path), "'" + path + "'");
    VQ_CHECK(images_.count > 0, "'{}' holds no images", path);
  }
  int64_t size() const override { return images_.count; }
  std::string item_name(int64_t i) const override {
    return fmt::format("fashion-mnist:{}#{}", split_, i);
  }
  std::string describe() const override {
    return fmt::format("Fashion-MNIST {} split ({} images, {}x{} grey -> {}x{}x{})", split_,
                       images_.count, images_.rows, images_.cols, channels_, size_, size_);
  }
  void load(int64_t i, const Augmentation& augmentation, float* out) const override {
    const int64_t rows = images_.rows, cols = images_.cols;
    const uint8_t* src = &images_.pixels[i * rows * cols];
    // The 28x28 digit-style images sit centred on background (0) when padded to a larger size;
    // other sizes are resized.
    Image8 img{cols, rows, 1, std::vector<uint8_t>(src, src + rows * cols)};
    if (size_ >= std::max(rows, cols) && (size_ - rows) % 2 == 0 && (size_ - cols) % 2 == 0) {
      Image8 padded{size_, size_, 1, std::vector<uint8_t>(static_cast<size_t>(size_ * size_), 0)};
      const int64_t oy = (size_ - rows) / 2, ox = (size_ - cols) / 2;
      for (int64_t y = 0; y < rows; ++y)
        std::copy_n(&src[y * cols], cols, &padded.pixels[(oy + y) * size_ + ox]);
      img = std::move(padded);
    } else {
      img = resize_and_crop(img, size_);
    }
    if (channels_ == 3) {  // grey to RGB
      Image8 rgb{img.width, img.height, 3, std::vector<uint8_t>(img.pixels.size() * 3)};
      for (size_t p = 0; p < img.pixels.size(); ++p)
        std::fill_n(&rgb.pixels[p * 3], 3, img.pixels[p]);
      img = std::move(rgb);
    }
    to_float_chw(img, augmentation.flip, out);  // a square, padded: nothing to crop
  }

 private:
  std::string split_;
  int64_t channels_, size_;
  IdxImages images_;
};

class ImageFolder : public Dataset {
 public:
  ImageFolder(const std::string& root, int64_t channels, int64_t size, int64_t min_image_size)
      : root_(root), channels_(channels), size_(size), min_image_size_(min_image_size) {
    VQ_CHECK(fs::exists(root), "image folder '{}' does not exist", root);
    VQ_CHECK(fs::is_directory(root), "'{}' is not a folder", root);
    static const std::vector<std::string> extensions = {".png", ".jpg", ".jpeg", ".bmp", ".tga",
                                                        ".gif", ".pnm", ".ppm",  ".pgm"};
    for (const auto& entry :
         fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied)) {
      if (!entry.is_regular_file()) continue;
      std::string ext = entry.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      if (std::find(extensions.begin(), extensions.end(), ext) != extensions.end())
        files_.push_back(entry.path().string());
    }
    std::sort(files_.begin(), files_.end());  // a stable order, so a seed fixes the shuffle
    VQ_CHECK(!files_.empty(),
             "image folder '{}' holds no images (looked for .png .jpg .jpeg .bmp .tga .gif .pnm "
             ".ppm .pgm, recursively)",
             root);
    upscaled_ = std::vector<std::atomic<bool>>(files_.size());
  }
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  std::string item_name(int64_t i) const override { return files_[i]; }
  std::string describe() const override {
    return fmt::format("image folder {} ({} files -> {}x{}x{})", root_, files_.size(), channels_,
                       size_, size_);
  }
  void load(int64_t i, const Augmentation& augmentation, float* out) const override {
    const Image8 image = decode_image(files_[i], channels_);
    const int64_t short_side = std::min(image.width, image.height);
    VQ_CHECK(short_side >= min_image_size_,
             "{}: {}x{} is below --min_image_size {} (it would be upscaled to {})", files_[i],
             image.width, image.height, min_image_size_, size_);
    if (short_side < size_) upscaled_[i] = true;
    to_float_chw(resize_and_crop(image, size_, augmentation.crop_x, augmentation.crop_y),
                 augmentation.flip, out);
  }
  int64_t upscaled_images() const override {
    return std::count_if(upscaled_.begin(), upscaled_.end(),
                         [](const auto& u) { return u.load(); });
  }

 private:
  std::string root_;
  int64_t channels_, size_, min_image_size_;
  std::vector<std::string> files_;
  mutable std::vector<std::atomic<bool>> upscaled_;  // loader threads mark images they upscaled
};

// Some of another dataset's images, in the given order.
class Subset : public Dataset {
 public:
  Subset(std::shared_ptr<Dataset> base, std::vector<int64_t> indices, std::string what)
      : base_(std::move(base)), indices_(std::move(indices)), what_(std::move(what)) {}
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  std::string item_name(int64_t i) const override { return base_->item_name(indices_[i]); }
  std::string describe() const override {
    return fmt::format("{} of {}: {} of its {} images", what_, base_->describe(), indices_.size(),
                       base_->size());
  }
  void load(int64_t i, const Augmentation& augmentation, float* out) const override {
    base_->load(indices_[i], augmentation, out);
  }
  int64_t upscaled_images() const override { return base_->upscaled_images(); }

 private:
  std::shared_ptr<Dataset> base_;
  std::vector<int64_t> indices_;
  std::string what_;
};

}  // namespace

bool is_fashion_mnist(const std::string& spec) { return spec.rfind("fashion-mnist", 0) == 0; }

HeldOut hold_out(const std::shared_ptr<Dataset>& all, double fraction) {
  const int64_t n = all->size();
  VQ_CHECK(n >= 2,
           "{} has {} image(s): too few to hold some out for validation; give --val_dir a folder",
           all->describe(), n);
  const int64_t k = std::clamp<int64_t>(std::llround(fraction * static_cast<double>(n)), 1, n - 1);
  // A Fisher-Yates shuffle from a fixed seed (not the run's: the split must not move with it).
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Generator gen(20261204);
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[gen.next_below(i + 1)]);
  std::vector<int64_t> val(order.begin(), order.begin() + k), train(order.begin() + k, order.end());
  std::sort(val.begin(), val.end());
  std::sort(train.begin(), train.end());
  const std::string share = fmt::format("{:g}% held out", fraction * 100.0);
  return {std::make_shared<Subset>(all, std::move(train), "the rest after " + share),
          std::make_shared<Subset>(all, std::move(val), share)};
}

std::string fashion_mnist_dir() {
  const char* env = std::getenv("VQ_FASHION_MNIST_DIR");
  return env != nullptr && *env != '\0' ? env : "/usr/share/datasets/fashion-mnist";
}

std::vector<uint8_t> fashion_mnist_labels(const std::string& split) {
  VQ_CHECK(split == "train" || split == "test",
           "fashion_mnist_labels: split must be train or test, got '{}'", split);
  const std::string path = fmt::format("{}/{}-labels-idx1-ubyte.gz", fashion_mnist_dir(),
                                       split == "train" ? "train" : "t10k");
  return parse_idx_labels(read_idx_file(path), "'" + path + "'");
}

std::shared_ptr<Dataset> open_dataset(const std::string& spec, int64_t channels, int64_t size,
                                      const std::string& default_split, int64_t min_image_size) {
  VQ_CHECK(channels == 1 || channels == 3, "datasets: channels must be 1 or 3, got {}", channels);
  VQ_CHECK(size >= 8, "datasets: image size must be at least 8, got {}", size);
  if (spec == "fashion-mnist") return std::make_shared<FashionMnist>(default_split, channels, size);
  if (spec == "fashion-mnist:train") return std::make_shared<FashionMnist>("train", channels, size);
  if (spec == "fashion-mnist:test") return std::make_shared<FashionMnist>("test", channels, size);
  VQ_CHECK(spec.rfind("fashion-mnist:", 0) != 0,
           "unknown Fashion-MNIST split in '{}': use fashion-mnist:train or fashion-mnist:test",
           spec);
  return std::make_shared<ImageFolder>(spec, channels, size, min_image_size);
}

}  // namespace vq::train
