// A tiny training setup for the trainer and tool tests: a folder of 16x16 PNG images (bars and
// blocks) and a config for a small model that trains in well under a second per step.
#pragma once

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "trainers/config.h"
#include "trainers/data/image.h"

namespace vq::test {

// Writes `count` 16x16 grey images into `dir` (created); returns dir.
inline std::string make_image_folder(const std::string& dir, int count) {
  std::filesystem::create_directories(dir);
  for (int i = 0; i < count; ++i) {
    std::vector<float> img(16 * 16, -1.0f);
    for (int y = 0; y < 16; ++y) {
      for (int x = 0; x < 16; ++x) {
        if ((i % 2 == 0 ? x : y) / 2 == (i / 2) % 8 || (x / 4 == i % 4 && y / 4 == (i / 4) % 4))
          img[y * 16 + x] = 1.0f;
      }
    }
    train::write_png_grid(fmt::format("{}/img_{:03}.png", dir, i), {img.data()}, 1, 16, 1);
  }
  return dir;
}

// A test suite whose tests share one folder of 24 tiny images, made once.
class TinyImages : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { images_ = make_image_folder(temp_path("images"), 24); }
  static inline std::string images_;
};

inline train::TrainConfig tiny_config(const std::string& images, const std::string& out) {
  train::TrainConfig c = train::preset_config("improved", "fmnist");
  c.model.resolution = 16;
  c.model.ch = 32;
  c.model.ch_mult = {1, 2};
  c.model.z_channels = 32;
  c.model.embed_dim = 8;
  c.quantizer.n_embed = 16;
  c.loss.disc_start = 2;  // the adversarial path runs too
  c.loss.disc_ndf = 8;
  c.loss.disc_layers = 2;
  c.training.train_dir = images;
  c.training.val_dir = images;
  c.training.model_dir = out;
  c.training.sample_dir = out + "/samples";
  c.training.model_name = "tiny";
  c.training.batch_size = 4;
  c.training.epochs = 2;
  c.training.steps_per_epoch = 3;
  c.training.val_limit = 8;
  c.training.num_samples = 4;
  c.training.log_every = 1;
  c.training.lr = 1e-3;
  return c;
}

}  // namespace vq::test
