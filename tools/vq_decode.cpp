// vq_decode: turns tokens back into images: the code indices vq_encode wrote (int64 [N, h, w])
// through the model's decoder. Writes decoded.png (a grid of the first 64) and, with
// --save_tensors, decoded.safetensors (the images, float32 [N, C, H, W] in [-1, 1], with the
// token file's image list). A generative model's sampled tokens decode the same way.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/safetensors.h"
#include "tools/model_flags.h"
#include "trainers/data/image.h"
#include "trainers/progress.h"

namespace {

using namespace vq;

// The token file's indices, checked against the model that is to decode them: int64 [N, h, w]
// with the model's latent size and every index one of its codes.
Tensor checked_indices(const std::string& path, const nn::SafetensorsFile& file,
                       const train::LoadedModel& loaded) {
  const auto it = std::find_if(file.tensors.begin(), file.tensors.end(),
                               [](const auto& t) { return t.first == "indices"; });
  VQ_CHECK(it != file.tensors.end(), "{} has no tensor 'indices' (not written by vq_encode)", path);
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
    const int64_t lo = static_cast<int64_t>(min(indices).item()),
                  hi = static_cast<int64_t>(max(indices).item());
    VQ_CHECK(lo >= 0 && hi < K,
             "{}: token values run from {} to {}, outside the model's codes 0..{}", path, lo, hi,
             K - 1);
  }
  return indices;
}

}  // namespace

int main(int argc, char** argv) {
  tools::ModelFlags model_flags;
  std::string tokens_path, output_dir = "decoded";
  int64_t num = 0, batch_size = 64;
  bool save_tensors = false;
  train::Flags flags("vq_decode", "Decodes tokens (vq_encode's code indices) back into images.");
  model_flags.add_to(flags);
  flags.add_string("tokens", &tokens_path, "the token file vq_encode wrote (.safetensors)");
  flags.add_string("output_dir", &output_dir, "where decoded.png (and decoded.safetensors) go");
  flags.add_int("num", &num, "decode only the first N token maps; 0 = all", 0);
  flags.add_int("batch_size", &batch_size, "token maps per batch", 1);
  flags.add_bool("save_tensors", &save_tensors,
                 "also write the images (float32, [-1, 1]) to decoded.safetensors");
  try {
    if (!flags.parse(argc, argv)) return 0;
    VQ_CHECK(!tokens_path.empty(), "--tokens is required (a file vq_encode wrote)");
    const train::LoadedModel loaded = model_flags.load();
    const nn::SafetensorsFile file = nn::load_safetensors(tokens_path);
    Tensor indices = checked_indices(tokens_path, file, loaded);
    if (num > 0 && num < indices.size(0)) indices = indices.narrow(0, 0, num);
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
      nn::Metadata metadata{{"tokens", tokens_path}, {"model_path", model_flags.model_path}};
      if (const auto names = file.metadata.find("images"); names != file.metadata.end()) {
        auto list = nlohmann::json::parse(names->second);
        if (list.is_array() && static_cast<int64_t>(list.size()) > N)
          list.erase(list.begin() + N, list.end());
        metadata["images"] = list.dump();
      }
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
