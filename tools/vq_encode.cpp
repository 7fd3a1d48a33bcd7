// vq_encode: turns a whole data set into code indices (int64 [N, h, w]), the tokens a downstream
// transformer or diffusion model trains on, saved as safetensors with the image list in the
// metadata.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/safetensors.h"
#include "trainers/data/loader.h"
#include "trainers/flags.h"
#include "trainers/model_io.h"
#include "trainers/progress.h"

int main(int argc, char** argv) {
  using namespace vq;
  std::string model_path, data_dir = "fashion-mnist:test", output, device = "cpu", model_config;
  int64_t batch_size = 64, num_threads = 0, limit = 0;
  train::Flags flags("vq_encode", "Encodes a data set into VQ code indices (tokens).");
  flags.add_string("model_path", &model_path, "model or checkpoint (.safetensors)");
  flags.add_string("data_dir", &data_dir, "images: a folder or fashion-mnist[:test|:train]");
  flags.add_string("output", &output,
                   "output .safetensors file (tensor \"indices\", int64 [N, h, w])");
  flags.add_int("batch_size", &batch_size, "images per batch", 1);
  flags.add_int("limit", &limit, "encode only the first N images; 0 = all", 0);
  flags.add_string("device", &device, "cpu, cuda or cuda:N");
  flags.add_int("num_threads", &num_threads, "CPU threads; 0 = all cores", 0);
  flags.add_string("model_config", &model_config,
                   "fmnist or seed256, only for plain weight files without our config");
  try {
    if (!flags.parse(argc, argv)) return 0;
    VQ_CHECK(!output.empty(), "--output is required (a .safetensors file)");
    if (num_threads > 0) set_num_threads(static_cast<int>(num_threads));
    const Device dev = parse_device(device);
    const train::LoadedModel loaded = train::load_model(model_path, dev, model_config);
    const auto& mc = loaded.config.model;
    train::LoaderOptions lo = train::LoaderOptions::single_pass(batch_size, limit);
    train::DataLoader loader(train::open_dataset(data_dir, mc.in_channels, mc.resolution, "test"),
                             mc.in_channels, mc.resolution, lo);
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
                          {"model_path", model_path},
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
