// vq_encode: turns a whole data set into code indices, the tokens a downstream transformer or
// diffusion model trains on: a token folder (tools/token_files.h) of shards of --shard_size
// images, with optional left-right flipped copies and class labels, and the image list beside them.
// Indices are stored as int16 for codebooks of up to 32768 codes, int32 beyond; labels as int32.
#include <cstdio>
#include <filesystem>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/file_io.h"
#include "nn/safetensors.h"
#include "tools/model_flags.h"
#include "tools/token_files.h"
#include "trainers/progress.h"

namespace {

using namespace vq;

// The images mirrored left-right ([N, C, H, W], the last dim reversed).
Tensor flipped(const Tensor& images) {
  const int64_t W = images.size(3);
  return index_select(
      images, 3,
      sub(scalar_tensor(W - 1, DType::Int64), arange(0, W, DType::Int64)).to(images.device()));
}

// An empty or new token folder: one that already holds tokens is refused, or with --overwrite
// emptied of them first, manifest first (a folder whose tokens.json exists is complete, so a
// re-run cut short must not leave the old one beside new shards).
void prepare_token_folder(const std::string& dir, bool overwrite) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  std::vector<fs::path> ours;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name == "tokens.json" || name == "images.txt" ||
        (name.rfind("tokens-", 0) == 0 && entry.path().extension() == ".safetensors")) {
      ours.push_back(entry.path());
    }
  }
  if (ours.empty()) return;
  VQ_CHECK(overwrite,
           "--output {} already holds tokens ({} files); pass --overwrite to replace them", dir,
           ours.size());
  fs::remove(fs::path(dir) / "tokens.json");
  for (const fs::path& p : ours) fs::remove(p);
}

// Collects token rows and writes them out a shard at a time.
class ShardWriter {
 public:
  ShardWriter(std::string dir, int64_t shard_size, tools::TokenManifest* manifest)
      : dir_(std::move(dir)), shard_size_(shard_size), manifest_(manifest) {}

  // Rows of one batch: indices [n, h, w], flipped copies and labels (undefined when off).
  void add(const Tensor& indices, const Tensor& flipped, const Tensor& labels) {
    for (int64_t start = 0; start < indices.size(0);) {
      const int64_t take = std::min(indices.size(0) - start, shard_size_ - pending_);
      auto part = [&](const Tensor& t) { return t.defined() ? t.narrow(0, start, take) : t; };
      indices_.push_back(part(indices));
      if (flipped.defined()) flipped_.push_back(part(flipped));
      if (labels.defined()) labels_.push_back(part(labels));
      pending_ += take;
      start += take;
      if (pending_ == shard_size_) flush();
    }
  }

  void flush() {
    if (pending_ == 0) return;
    const std::string name = tools::shard_file_name(static_cast<int64_t>(manifest_->shards.size()));
    nn::NamedTensors tensors{{"indices", concat(indices_, 0)}};
    if (!flipped_.empty()) tensors.emplace_back("indices_flipped", concat(flipped_, 0));
    if (!labels_.empty()) tensors.emplace_back("labels", concat(labels_, 0));
    const nn::Narrowed narrowed{{"indices", manifest_->index_dtype},
                                {"indices_flipped", manifest_->index_dtype},
                                {"labels", "I32"}};
    nn::save_safetensors(dir_ + "/" + name, tensors, {{"first", std::to_string(written_)}},
                         narrowed);
    manifest_->shards.emplace_back(name, pending_);
    written_ += pending_;
    pending_ = 0;
    indices_.clear();
    flipped_.clear();
    labels_.clear();
  }

 private:
  std::string dir_;
  int64_t shard_size_, pending_ = 0, written_ = 0;
  tools::TokenManifest* manifest_;
  std::vector<Tensor> indices_, flipped_, labels_;
};

}  // namespace

int main(int argc, char** argv) {
  tools::ModelFlags model_flags;
  std::string data_dir = "fashion-mnist:test", output;
  int64_t batch_size = 64, limit = 0, shard_size = 10000;
  bool flip = false, with_labels = false, overwrite = false;
  train::Flags flags("vq_encode", "Encodes a data set into VQ code indices (tokens).");
  model_flags.add_to(flags);
  flags.add_string("data_dir", &data_dir, tools::kDataDirHelp);
  flags.add_string("output", &output,
                   "the token folder to write: tokens.json, images.txt and shards "
                   "tokens-NNNNN.safetensors (\"indices\" [n, h, w], int16 up to 32768 codes, "
                   "int32 beyond)");
  flags.add_int("batch_size", &batch_size, "images per batch", 1);
  flags.add_int("limit", &limit, "encode only the first N images; 0 = all", 0);
  flags.add_int("shard_size", &shard_size, "images per shard file", 1);
  flags.add_bool("flip", &flip,
                 "also encode every image mirrored left-right (\"indices_flipped\" in each shard)");
  flags.add_bool("labels", &with_labels,
                 "also store class labels (\"labels\", int32 [n]): the first folder level under "
                 "--data_dir (class names in tokens.json), or Fashion-MNIST's own");
  flags.add_bool("overwrite", &overwrite,
                 "replace the tokens already in --output (otherwise such a folder is refused)");
  try {
    if (!flags.parse(argc, argv)) return 0;
    VQ_CHECK(!output.empty(), "--output is required (a folder for the tokens)");
    const train::LoadedModel loaded = model_flags.load();
    const Device dev = parse_device(model_flags.device);
    train::DataLoader loader = tools::model_data(
        data_dir, loaded.config.model, train::LoaderOptions::single_pass(batch_size, limit));
    const train::Dataset& data = loader.dataset();
    tools::Labels labels;
    if (with_labels) labels = tools::data_set_labels(data_dir, data);
    prepare_token_folder(output, overwrite);

    tools::TokenManifest manifest;
    manifest.latent_size = loaded.config.model.latent_size();
    manifest.num_codes = loaded.model->quantizer().num_codes();
    manifest.index_dtype = manifest.num_codes <= 32768 ? "I16" : "I32";
    manifest.shard_size = shard_size;
    manifest.flipped = flip;
    manifest.label_names = labels.names;
    manifest.model_path = model_flags.model_path;
    manifest.data = data.describe();
    ShardWriter shards(output, shard_size, &manifest);
    std::string image_list;
    train::ProgressBar bar("encoding", loader.batches_per_pass(), 20);
    int64_t batches = 0;
    NoGradGuard no_grad;
    while (auto batch = loader.next()) {
      const Tensor x = batch->images.to(dev);
      const Tensor indices = loaded.model->encode_indices(x).cpu();
      const Tensor mirrored = flip ? loaded.model->encode_indices(flipped(x)).cpu() : Tensor();
      std::vector<int64_t> batch_labels;
      for (int64_t i : batch->indices) {
        image_list += data.item_name(i) + "\n";
        if (with_labels) batch_labels.push_back(labels.of_image[i]);
      }
      const Tensor label_tensor =
          with_labels ? from_vector<int64_t>(batch_labels, {indices.size(0)}) : Tensor();
      shards.add(indices, mirrored, label_tensor);
      manifest.num_images += indices.size(0);
      bar.update(++batches, fmt::format("{} images", manifest.num_images));
    }
    bar.finish(fmt::format("{} images", manifest.num_images));
    VQ_CHECK(manifest.num_images > 0, "no readable images in {}", data.describe());
    shards.flush();
    nn::write_file_atomically(output + "/images.txt", image_list);
    tools::write_token_manifest(output, manifest);  // last: a folder with it is complete
    std::printf(
        "vq_encode: %lld images -> %zu shard(s) of indices [n, %lld, %lld] (K = %lld)%s%s in "
        "%s%s\n",
        static_cast<long long>(manifest.num_images), manifest.shards.size(),
        static_cast<long long>(manifest.latent_size), static_cast<long long>(manifest.latent_size),
        static_cast<long long>(manifest.num_codes), flip ? ", with flipped copies" : "",
        with_labels ? fmt::format(", labels of {} classes", labels.names.size()).c_str() : "",
        output.c_str(),
        loader.bad_images()
            ? fmt::format(" ({} unreadable images skipped)", loader.bad_images()).c_str()
            : "");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vq_encode: error: %s\n", e.what());
    return 1;
  }
}
