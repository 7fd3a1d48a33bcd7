#include "tools/token_files.h"

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "autograd/error.h"
#include "nn/file_io.h"

namespace vq::tools {

namespace fs = std::filesystem;

std::string shard_file_name(int64_t shard) {
  return fmt::format("tokens-{:05}.safetensors", shard);
}

void write_token_manifest(const std::string& dir, const TokenManifest& m) {
  nlohmann::json shards = nlohmann::json::array();
  for (const auto& [file, images] : m.shards)
    shards.push_back({{"file", file}, {"images", images}});
  const nlohmann::json j = {{"format", "vqgan.cpp tokens"}, {"version", 1},
                            {"num_images", m.num_images},   {"latent_size", m.latent_size},
                            {"num_codes", m.num_codes},     {"index_dtype", m.index_dtype},
                            {"shard_size", m.shard_size},   {"flipped", m.flipped},
                            {"labels", m.label_names},      {"shards", shards},
                            {"model_path", m.model_path},   {"data", m.data}};
  nn::write_file_atomically(dir + "/tokens.json", j.dump(2) + "\n");
}

TokenManifest read_token_manifest(const std::string& dir) {
  const std::string path = dir + "/tokens.json";
  VQ_CHECK(fs::exists(path), "'{}' has no tokens.json (not a token folder written by vq_encode)",
           dir);
  TokenManifest m;
  try {
    const auto j = nlohmann::json::parse(nn::read_file(path, 64 << 20, "token manifest"));
    VQ_CHECK(j.at("format") == "vqgan.cpp tokens" && j.at("version") == 1,
             "not a version-1 vqgan.cpp token manifest");
    m.num_images = j.at("num_images");
    m.latent_size = j.at("latent_size");
    m.num_codes = j.at("num_codes");
    m.index_dtype = j.at("index_dtype");
    m.shard_size = j.at("shard_size");
    m.flipped = j.at("flipped");
    m.label_names = j.at("labels").get<std::vector<std::string>>();
    for (const auto& s : j.at("shards")) m.shards.emplace_back(s.at("file"), s.at("images"));
    m.model_path = j.at("model_path");
    m.data = j.at("data");
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: malformed token manifest ({})", path, e.what()));
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path, e.what()));
  }
  int64_t total = 0;
  for (const auto& [file, images] : m.shards) total += images;
  VQ_CHECK(total == m.num_images, "{}: its shards hold {} images, but it says {}", path, total,
           m.num_images);
  return m;
}

Labels data_set_labels(const std::string& data_dir, const train::Dataset& data) {
  Labels labels;
  const int64_t n = data.size();
  if (train::is_fashion_mnist(data_dir)) {
    labels.names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    std::map<std::string, std::vector<uint8_t>> by_split;
    for (int64_t i = 0; i < n; ++i) {
      // "fashion-mnist:SPLIT#INDEX"
      const std::string name = data.item_name(i);
      const size_t colon = name.find(':'), hash = name.find('#');
      const std::string split = name.substr(colon + 1, hash - colon - 1);
      auto it = by_split.find(split);
      if (it == by_split.end())
        it = by_split.emplace(split, train::fashion_mnist_labels(split)).first;
      labels.of_image.push_back(it->second.at(std::stoll(name.substr(hash + 1))));
    }
    return labels;
  }
  std::vector<std::string> folder_of(static_cast<size_t>(n));
  std::map<std::string, int64_t> classes;
  for (int64_t i = 0; i < n; ++i) {
    const fs::path relative = fs::path(data.item_name(i)).lexically_relative(data_dir);
    VQ_CHECK(std::distance(relative.begin(), relative.end()) >= 2,
             "--labels: '{}' is not in a class folder (labels are the first folder level under {})",
             data.item_name(i), data_dir);
    folder_of[i] = relative.begin()->string();
    classes.emplace(folder_of[i], 0);
  }
  for (auto& [name, index] : classes) {  // sorted names, numbered in order
    index = static_cast<int64_t>(labels.names.size());
    labels.names.push_back(name);
  }
  for (const std::string& folder : folder_of) labels.of_image.push_back(classes.at(folder));
  return labels;
}

}  // namespace vq::tools
