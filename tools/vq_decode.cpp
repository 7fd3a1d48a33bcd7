// vq_decode: turns tokens back into images through the model's decoder: a token folder vq_encode
// wrote (tools/token_files.h; --flipped for the mirrored copies) or one token file ("indices"
// [N, h, w], int16/int32/int64, e.g. one shard, or a generative model's samples). Writes
// decoded.png (a grid of the first 64) and, with --save_tensors, decoded.safetensors (the images,
// float32 [N, C, H, W] in [-1, 1], with their image names where the tokens have them).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/safetensors.h"
#include "tools/model_flags.h"
#include "tools/token_files.h"
#include "trainers/data/image.h"
#include "trainers/progress.h"

namespace {

using namespace vq;

// Tokens to decode, in order, with the names of their images (empty where unknown).
struct Tokens {
  Tensor indices;  // int64 [N, h, w]
  std::vector<std::string> names;
};

// `name` ("indices" or "indices_flipped") of a token file, checked against the model that is to
// decode it: int64 [N, h, w] with the model's latent size and every index one of its codes.
Tensor checked_indices(const std::string& path, const nn::SafetensorsFile& file,
                       const std::string& name, const train::LoadedModel& loaded) {
  const auto it = std::find_if(file.tensors.begin(), file.tensors.end(),
                               [&](const auto& t) { return t.first == name; });
  VQ_CHECK(it != file.tensors.end(), "{} has no tensor '{}' ({})", path, name,
           name == "indices" ? "not written by vq_encode" : "encoded without --flip");
  const Tensor& indices = it->second;
  const int64_t h = loaded.config.model.latent_size(), K = loaded.model->quantizer().num_codes();
  VQ_CHECK(indices.dtype() == DType::Int64 && indices.dim() == 3 && indices.size(1) == h &&
               indices.size(2) == h,
           "{}: indices are {} {}, but this model decodes int64 [N, {}, {}]", path,
           dtype_name(indices.dtype()), shape_str(indices.shape()), h, h);
  const auto meta = file.metadata.find("num_codes");
  VQ_CHECK(meta == file.metadata.end() || meta->second == std::to_string(K),
           "{} holds tokens of a {}-code codebook, but this model has {} codes", path, meta->second,
           K);
  if (indices.numel() > 0) {
    const int64_t lo = min(indices).to_vector<int64_t>()[0],
                  hi = max(indices).to_vector<int64_t>()[0];
    VQ_CHECK(lo >= 0 && hi < K,
             "{}: token values run from {} to {}, outside the model's codes 0..{}", path, lo, hi,
             K - 1);
  }
  return indices;
}

// The first `num` (0: all) token maps of a folder or a file.
Tokens read_tokens(const std::string& path, bool flipped, int64_t num,
                   const train::LoadedModel& loaded) {
  const std::string name = flipped ? "indices_flipped" : "indices";
  Tokens out;
  std::vector<Tensor> parts;
  int64_t have = 0;
  if (std::filesystem::is_directory(path)) {
    const tools::TokenManifest m = tools::read_token_manifest(path);
    const int64_t K = loaded.model->quantizer().num_codes();
    VQ_CHECK(m.num_codes == K, "{} holds tokens of a {}-code codebook, but this model has {} codes",
             path, m.num_codes, K);
    VQ_CHECK(!flipped || m.flipped, "{}: --flipped, but the tokens were encoded without --flip",
             path);
    for (const auto& [file, images] : m.shards) {
      if (num > 0 && have >= num) break;
      const std::string shard = path + "/" + file;
      const nn::SafetensorsFile f =
          nn::load_safetensors(shard, [&](const std::string& t) { return t == name; });
      parts.push_back(checked_indices(shard, f, name, loaded));
      VQ_CHECK(parts.back().size(0) == images, "{} holds {} token maps, but tokens.json says {}",
               shard, parts.back().size(0), images);
      have += images;
    }
    std::ifstream list(path + "/images.txt");
    for (std::string line; std::getline(list, line);) out.names.push_back(line);
  } else {
    const nn::SafetensorsFile f = nn::load_safetensors(path);
    parts.push_back(checked_indices(path, f, name, loaded));
    if (const auto names = f.metadata.find("images"); names != f.metadata.end()) {
      const auto list = nlohmann::json::parse(names->second);
      if (list.is_array()) out.names = list.get<std::vector<std::string>>();
    }
  }
  out.indices = concat(parts, 0);
  if (num > 0 && num < out.indices.size(0)) out.indices = out.indices.narrow(0, 0, num);
  const auto N = static_cast<size_t>(out.indices.size(0));
  if (out.names.size() != N) out.names.resize(std::min(out.names.size(), N));
  if (out.names.size() < N) out.names.clear();  // a partial list would mislabel
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  tools::ModelFlags model_flags;
  std::string tokens_path, output_dir = "decoded";
  int64_t num = 0, batch_size = 64;
  bool save_tensors = false, flipped = false;
  train::Flags flags("vq_decode", "Decodes tokens (vq_encode's code indices) back into images.");
  model_flags.add_to(flags);
  flags.add_string("tokens", &tokens_path,
                   "the token folder vq_encode wrote, or one token file (.safetensors with "
                   "integer \"indices\" [N, h, w])");
  flags.add_bool("flipped", &flipped, "decode the left-right flipped copies (vq_encode --flip)");
  flags.add_string("output_dir", &output_dir, "where decoded.png (and decoded.safetensors) go");
  flags.add_int("num", &num,
                "decode only the first N token maps; 0 = all (without --save_tensors at most the "
                "grid's 64)",
                0);
  flags.add_int("batch_size", &batch_size, "token maps per batch", 1);
  flags.add_bool("save_tensors", &save_tensors,
                 "also write the images (float32, [-1, 1]) to decoded.safetensors");
  try {
    if (!flags.parse(argc, argv)) return 0;
    VQ_CHECK(!tokens_path.empty(), "--tokens is required (a token folder vq_encode wrote)");
    const train::LoadedModel loaded = model_flags.load();
    // Without --save_tensors only the grid's 64 images are needed: a whole data set's tokens
    // would take hours to decode for one PNG.
    if (!save_tensors) num = num > 0 ? std::min<int64_t>(num, 64) : 64;
    const Tokens tokens = read_tokens(tokens_path, flipped, num, loaded);
    const Tensor& indices = tokens.indices;
    const int64_t N = indices.size(0);
    VQ_CHECK(N > 0, "{} holds no token maps", tokens_path);
    const Device device = parse_device(model_flags.device);

    NoGradGuard no_grad;
    std::vector<Tensor> parts;
    train::ProgressBar bar("decoding", (N + batch_size - 1) / batch_size, 20);
    for (int64_t start = 0; start < N; start += batch_size) {
      const Tensor batch = indices.narrow(0, start, std::min(batch_size, N - start)).to(device);
      parts.push_back(clamp(loaded.model->decode_indices(batch), -1.0, 1.0).cpu());
      bar.update(static_cast<int64_t>(parts.size()),
                 fmt::format("{} images", start + batch.size(0)));
    }
    bar.finish(fmt::format("{} images", N));
    const Tensor images = concat(parts, 0).contiguous();

    std::filesystem::create_directories(output_dir);
    const int64_t C = images.size(1), S = images.size(2), shown = std::min<int64_t>(N, 64);
    std::vector<const float*> grid;
    for (int64_t i = 0; i < shown; ++i) grid.push_back(images.data<float>() + i * C * S * S);
    train::write_png_grid(output_dir + "/decoded.png", grid, C, S, std::min<int64_t>(shown, 8));
    if (save_tensors) {
      nn::Metadata metadata{{"tokens", tokens_path},
                            {"model_path", model_flags.model_path},
                            {"flipped", flipped ? "true" : "false"}};
      if (!tokens.names.empty()) metadata["images"] = nlohmann::json(tokens.names).dump();
      nn::save_safetensors(output_dir + "/decoded.safetensors", {{"images", images}}, metadata);
    }
    std::printf(
        "vq_decode: %lld token maps %s -> images [%lld, %lld, %lld, %lld]; wrote "
        "%s/decoded.png%s\n",
        static_cast<long long>(N), shape_str(indices.shape()).c_str(), static_cast<long long>(N),
        static_cast<long long>(C), static_cast<long long>(S), static_cast<long long>(S),
        output_dir.c_str(), save_tensors ? ", decoded.safetensors" : "");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vq_decode: error: %s\n", e.what());
    return 1;
  }
}
