#include "tools/model_flags.h"

#include <cstdio>

#include "autograd/ops.h"

namespace vq::tools {

void ModelFlags::add_to(train::Flags& flags, const std::string& model_help) {
  flags.add_string("model_path", &model_path, model_help);
  flags.add_string("device", &device, "cpu, cuda or cuda:N");
  flags.add_int("num_threads", &num_threads, "CPU threads; 0 = all cores", 0);
  flags.add_string("model_config", &model_config,
                   "fmnist or seed256, only for plain weight files without our config");
  flags.add_bool("allow_nonfinite", &allow_nonfinite,
                 "load a model whose weights hold NaN or infinity (refused otherwise: such a file "
                 "is damaged), e.g. to see what it does");
}

train::LoadedModel ModelFlags::load() const {
  if (num_threads > 0) set_num_threads(static_cast<int>(num_threads));
  if (allow_nonfinite)
    std::fprintf(stderr, "warning: --allow_nonfinite: NaN or infinite weights are not refused\n");
  return train::load_model(model_path, parse_device(device), model_config, allow_nonfinite);
}

train::DataLoader model_data(const std::string& data_dir, const models::ModelConfig& model,
                             const train::LoaderOptions& options) {
  // Fashion-MNIST (28x28 grey, padded to 32) fits only 1-channel 32x32 models; any other model
  // was trained on other images, and measuring it on upscaled grey digits of clothing would
  // report numbers about the wrong data.
  VQ_CHECK(!train::is_fashion_mnist(data_dir) || (model.in_channels == 1 && model.resolution == 32),
           "this model takes {}-channel {}x{} images, but --data_dir is {} (Fashion-MNIST: grey "
           "28x28 padded to 32; it is the default): give --data_dir a folder of images like the "
           "model's own",
           model.in_channels, model.resolution, model.resolution, data_dir);
  return train::DataLoader(
      train::open_dataset(data_dir, model.in_channels, model.resolution, "test"), model.in_channels,
      model.resolution, options);
}

}  // namespace vq::tools
