// vq_reconstruct: encodes and decodes the first N images of a data set with a trained model;
// writes reconstructions.png (inputs above reconstructions), metrics.csv (per-image PSNR and
// SSIM) and, with --save_tensors, reconstructions.safetensors (inputs, reconstructions, indices).
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/file_io.h"
#include "nn/safetensors.h"
#include "tools/model_flags.h"
#include "trainers/data/image.h"
#include "trainers/metrics.h"

int main(int argc, char** argv) {
  using namespace vq;
  tools::ModelFlags model_flags;
  std::string data_dir = "fashion-mnist:test", output_dir = "reconstructions";
  int64_t num = 16;
  bool save_tensors = false;
  train::Flags flags("vq_reconstruct",
                     "Reconstructs images through a trained VQGAN and measures PSNR and SSIM.");
  model_flags.add_to(flags);
  flags.add_string("data_dir", &data_dir, "images: a folder or fashion-mnist[:test|:train]");
  flags.add_string("output_dir", &output_dir,
                   "where reconstructions.png, metrics.csv (and tensors) go");
  flags.add_int("num", &num, "how many images (the first N of the data set)", 1);
  flags.add_bool("save_tensors", &save_tensors,
                 "also write inputs, reconstructions (float32, [-1, 1]) and code indices");
  try {
    if (!flags.parse(argc, argv)) return 0;
    const train::LoadedModel loaded = model_flags.load();
    train::DataLoader loader = tools::model_data(data_dir, loaded.config.model,
                                                 train::LoaderOptions::single_pass(num, num));
    auto batch = loader.next();
    VQ_CHECK(batch.has_value(), "no readable images in {}", loader.dataset().describe());
    NoGradGuard no_grad;
    const Tensor x = batch->images.to(parse_device(model_flags.device));
    const Tensor indices = loaded.model->encode_indices(x);
    const Tensor recon = clamp(loaded.model->decode_indices(indices), -1.0, 1.0).cpu();
    const auto psnr = train::psnr_per_image(recon, batch->images);
    const auto ssim = train::ssim_per_image(recon, batch->images);

    std::filesystem::create_directories(output_dir);
    train::write_comparison_grid(output_dir + "/reconstructions.png", batch->images, recon);
    std::string csv = "index,image,psnr,ssim\n";
    double mean_psnr = 0, mean_ssim = 0;
    nlohmann::json names = nlohmann::json::array();
    for (size_t i = 0; i < psnr.size(); ++i) {
      const std::string name = loader.dataset().item_name(batch->indices[i]);
      csv += fmt::format("{},{},{:.4f},{:.5f}\n", i, name, psnr[i], ssim[i]);
      names.push_back(name);
      mean_psnr += psnr[i] / psnr.size();
      mean_ssim += ssim[i] / ssim.size();
    }
    nn::write_file_atomically(output_dir + "/metrics.csv", csv);
    if (save_tensors) {
      nn::save_safetensors(
          output_dir + "/reconstructions.safetensors",
          {{"inputs", batch->images}, {"reconstructions", recon}, {"indices", indices.cpu()}},
          {{"images", names.dump()}, {"model_path", model_flags.model_path}});
    }
    std::printf(
        "vq_reconstruct: %zu images from %s\n  mean PSNR %.2f dB, mean SSIM %.4f\n  wrote "
        "%s/reconstructions.png, metrics.csv%s\n",
        psnr.size(), loader.dataset().describe().c_str(), mean_psnr, mean_ssim, output_dir.c_str(),
        save_tensors ? ", reconstructions.safetensors" : "");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vq_reconstruct: error: %s\n", e.what());
    return 1;
  }
}
