// The token folder vq_encode writes and vq_decode reads: what a downstream transformer or diffusion
// model trains on.
//   tokens.json                 the manifest (below)
//   images.txt                  one image name per line, in token order
//   tokens-00000.safetensors    shards of up to shard_size images each: "indices" [n, h, w] (int16
//                               up to 32768 codes, int32 beyond: index_dtype); with flips
//                               "indices_flipped" (the same images mirrored left-right, as
//                               LlamaGen's code extraction stores them); with labels "labels"
//                               int32 [n]; metadata "first" (the shard's first image number).
//                               Our reader widens them to int64.
// The image list lives beside the shards, not in their headers, whose size safetensors limits.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "trainers/data/dataset.h"

namespace vq::tools {

struct TokenManifest {
  int64_t num_images = 0, latent_size = 0, num_codes = 0, shard_size = 0;
  std::string index_dtype = "I16";  // how the shards store indices: I16 or I32
  bool flipped = false;
  std::vector<std::string> label_names;                 // empty without labels
  std::vector<std::pair<std::string, int64_t>> shards;  // file name, images
  std::string model_path, data;
};

std::string shard_file_name(int64_t shard);
// Atomic, like every file we write.
void write_token_manifest(const std::string& dir, const TokenManifest& manifest);
// Reads and checks dir/tokens.json (missing, malformed, or shards that do not add up: a clear
// error naming the file).
TokenManifest read_token_manifest(const std::string& dir);

// Class labels of a data set's images: from the first folder level under an image folder's root
// (the ImageNet layout, class names sorted), or Fashion-MNIST's own labels with their names.
// Refuses an image that sits directly in the root (it has no class folder).
struct Labels {
  std::vector<int64_t> of_image;  // class index of each image of the data set, in its order
  std::vector<std::string> names;
};
Labels data_set_labels(const std::string& data_dir, const train::Dataset& data);

}  // namespace vq::tools
