// vq_encode: turns a whole data set into code indices (int64 [N, h, w]), the tokens a downstream
// transformer or diffusion model trains on, saved as safetensors with the image list in the
// metadata.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/safetensors.h"
#include "tools/model_flags.h"
#include "trainers/progress.h"

int main(int argc, char** argv) {
  using namespace vq;
  tools::ModelFlags model_flags;
  std::string data_dir = "fashion-mnist:test", output;
  int64_t batch_size = 64, limit = 0;
  train::Flags flags("vq_encode", "Encodes a data set into VQ code indices (tokens).");
  model_flags.add_to(flags);
  flags.add_string("data_dir", &data_dir, tools::kDataDirHelp);
  flags.add_string("output", &output,
                   "output .safetensors file (tensor \"indices\", int64 [N, h, w])");
  flags.add_int("batch_size", &batch_size, "images per batch", 1);
  flags.add_int("limit", &limit, "encode only the first N images; 0 = all", 0);
  try {
    if (!flags.parse(argc, argv)) return 0;
    VQ_CHECK(!output.empty(), "--output is required (a .safetensors file)");
    const train::LoadedModel loaded = model_flags.load();
    const Device dev = parse_device(model_flags.device);
    train::DataLoader loader = tools::model_data(
        data_dir, loaded.config.model, train::LoaderOptions::single_pass(batch_size, limit));
    std::vector<Tensor> parts;
    nlohmann::json names = nlohmann::json::array();
    train::ProgressBar bar("encoding", loader.batches_per_pass(), 20);
    int64_t done = 0;
    NoGradGuard no_grad;
    while (auto batch = loader.next()) {
      parts.push_back(loaded.model->encode_indices(batch->images.to(dev)).cpu());
      for (int64_t i : batch->indices) names.push_back(loader.dataset().item_name(i));
      bar.update(++done, fmt::format("{} images", names.size()));
    }
    bar.finish(fmt::format("{} images", names.size()));
    VQ_CHECK(!parts.empty(), "no readable images in {}", loader.dataset().describe());
    const Tensor indices = concat(parts, 0);
    nn::save_safetensors(output, {{"indices", indices}},
                         {{"images", names.dump()},
                          {"model_path", model_flags.model_path},
                          {"num_codes", std::to_string(loaded.model->quantizer().num_codes())},
                          {"data", loader.dataset().describe()}});
    std::printf("vq_encode: %lld images -> indices %s (K = %lld) in %s%s\n",
                static_cast<long long>(indices.size(0)), shape_str(indices.shape()).c_str(),
                static_cast<long long>(loaded.model->quantizer().num_codes()), output.c_str(),
                loader.bad_images()
                    ? fmt::format(" ({} unreadable images skipped)", loader.bad_images()).c_str()
                    : "");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vq_encode: error: %s\n", e.what());
    return 1;
  }
}
