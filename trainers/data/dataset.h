// Datasets of training images, each image already preprocessed to [-1, 1] float CHW at the run's
// size and channel count.
//   "fashion-mnist:train" / "fashion-mnist:test": Debian's dataset-fashion-mnist (IDX files,
//       gzip), 28x28 grey, padded with background to 32 (or resized to other sizes); plain
//       "fashion-mnist" means the caller's default split (train for training, test for evaluation)
//   any other text: a folder searched recursively for .png .jpg .jpeg .bmp .tga .gif .pnm .ppm .pgm
//       files (decoded lazily, so a corrupt file is found when it is first loaded)
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace vq::train {

// How one training image is drawn (the loader's counter-based random numbers decide it).
struct Augmentation {
  bool flip = false;                   // mirrored left-right
  float crop_x = 0.5f, crop_y = 0.5f;  // where the crop sits in the slack (0.5: the centre)
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Fills out[channels * size * size] with image i; throws vq::Error naming the file when it
  // cannot be read (the loader reports and skips it).
  virtual void load(int64_t i, const Augmentation& augmentation, float* out) const = 0;
  // Distinct images loaded so far that were smaller than the size and so upscaled.
  virtual int64_t upscaled_images() const { return 0; }
  virtual std::string item_name(int64_t i) const = 0;  // a path, or "fashion-mnist:train#17"
  virtual std::string describe() const = 0;
};

// Opens `spec` (see above) for images of `channels` channels at `size` x `size`. Throws with a
// clear message for a missing or empty folder, or missing Fashion-MNIST files.
// A folder's image whose short side is below `min_image_size` (> 0) is refused (the loader
// reports and skips it) instead of upscaled.
std::shared_ptr<Dataset> open_dataset(const std::string& spec, int64_t channels, int64_t size,
                                      const std::string& default_split = "train",
                                      int64_t min_image_size = 0);

// Whether `spec` names Fashion-MNIST (any split) rather than a folder.
bool is_fashion_mnist(const std::string& spec);

// A fixed share of a dataset set aside for validation: 2% of its images, at least one, picked by a
// shuffle with a fixed seed over the dataset's own order (sorted paths), so every run, resume and
// rank holds out the same images. Refuses a dataset of fewer than 2 images.
struct HeldOut {
  std::shared_ptr<Dataset> train, val;  // disjoint, together the whole dataset
};
HeldOut hold_out(const std::shared_ptr<Dataset>& all, double fraction = 0.02);

// Class labels (0-9) of a Fashion-MNIST split ("train" or "test"), from the same package.
std::vector<uint8_t> fashion_mnist_labels(const std::string& split);

// Where the Fashion-MNIST files are read from: $VQ_FASHION_MNIST_DIR when set (a machine without
// the Debian package, e.g. a GPU host the files were carried to), else where Debian's
// dataset-fashion-mnist package puts them, /usr/share/datasets/fashion-mnist.
std::string fashion_mnist_dir();

}  // namespace vq::train
