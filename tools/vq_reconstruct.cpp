// vq_reconstruct: encodes and decodes the first N images of a data set with a trained model;
// writes reconstructions.png (inputs above reconstructions), metrics.csv (per-image L1, PSNR,
// SSIM and ST-LPIPS with VGG16 and AlexNet) and, with --save_tensors, reconstructions.safetensors
// (inputs, reconstructions, indices).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/file_io.h"
#include "nn/safetensors.h"
#include "tools/fid.h"
#include "tools/model_flags.h"
#include "trainers/data/image.h"
#include "trainers/quality.h"

int main(int argc, char** argv) {
  using namespace vq;
  tools::ModelFlags model_flags;
  std::string data_dir = "fashion-mnist:test", output_dir = "reconstructions", fid_weights;
  int64_t num = 16, stlpips_images = -1;
  bool save_tensors = false;
  train::Flags flags("vq_reconstruct",
                     "Reconstructs images through a trained VQGAN and measures L1, PSNR, SSIM, "
                     "ST-LPIPS and (with --fid_weights) rFID.");
  model_flags.add_to(flags);
  flags.add_string("data_dir", &data_dir, tools::kDataDirHelp);
  flags.add_string("output_dir", &output_dir,
                   "where reconstructions.png, metrics.csv (and tensors) go");
  flags.add_int("num", &num, "how many images (the first N of the data set)", 1);
  flags.add_int("stlpips_images", &stlpips_images,
                "how many of them also get ST-LPIPS; 0 = none, -1 = all", -1);
  flags.add_bool("save_tensors", &save_tensors,
                 "also write inputs, reconstructions (float32, [-1, 1]) and code indices");
  flags.add_string("fid_weights", &fid_weights, tools::kFidWeightsHelp);
  try {
    if (!flags.parse(argc, argv)) return 0;
    const train::LoadedModel loaded = model_flags.load();
    train::DataLoader loader = tools::model_data(data_dir, loaded.config.model,
                                                 train::LoaderOptions::single_pass(num, num));
    auto batch = loader.next();
    VQ_CHECK(batch.has_value(), "no readable images in {}", loader.dataset().describe());
    NoGradGuard no_grad;
    const Device device = parse_device(model_flags.device);
    tools::FidMeter fid(fid_weights, device);  // loads (and checks) the weights before the work
    const Tensor x = batch->images.to(device);
    const Tensor indices = loaded.model->encode_indices(x);
    const Tensor recon = clamp(loaded.model->decode_indices(indices), -1.0, 1.0).cpu();
    train::QualityMeter meter(stlpips_images, loaded.config.model.resolution,
                              parse_device(model_flags.device));
    const auto quality = meter.add(recon, batch->images);
    const train::ImageQuality mean = meter.mean();
    fid.add(recon, batch->images);
    const double rfid_value = fid.fid();
    const std::string rfid = std::isnan(rfid_value)
                                 ? fid.description()  // "rFID not measured: why"
                                 : "rFID " + tools::rfid_text(rfid_value, fid.images(), "");

    std::filesystem::create_directories(output_dir);
    train::write_comparison_grid(output_dir + "/reconstructions.png", batch->images, recon);
    // An image without ST-LPIPS has empty cells there.
    auto cell = [](double v) { return std::isnan(v) ? std::string() : fmt::format("{:.5f}", v); };
    std::string csv = "index,image,l1,psnr,ssim,stlpips_vgg,stlpips_alex\n";
    nlohmann::json names = nlohmann::json::array();
    for (size_t i = 0; i < quality.size(); ++i) {
      const std::string name = loader.dataset().item_name(batch->indices[i]);
      const train::ImageQuality& q = quality[i];
      csv += fmt::format("{},{},{:.5f},{:.4f},{:.5f},{},{}\n", i, name, q.l1, q.psnr, q.ssim,
                         cell(q.stlpips_vgg), cell(q.stlpips_alex));
      names.push_back(name);
    }
    nn::write_file_atomically(output_dir + "/metrics.csv", csv);
    if (save_tensors) {
      nn::save_safetensors(
          output_dir + "/reconstructions.safetensors",
          {{"inputs", batch->images}, {"reconstructions", recon}, {"indices", indices.cpu()}},
          {{"images", names.dump()}, {"model_path", model_flags.model_path}});
    }
    const std::string stlpips =
        meter.stlpips_measured() > 0
            ? fmt::format("mean ST-LPIPS VGG16 {:.4f}, AlexNet {:.4f} ({} images)",
                          mean.stlpips_vgg, mean.stlpips_alex, meter.stlpips_measured())
            : meter.stlpips_description();
    std::printf(
        "vq_reconstruct: %zu images from %s\n  mean L1 %.4f, PSNR %.2f dB, SSIM %.4f\n  %s\n"
        "  %s\n  wrote %s/reconstructions.png, metrics.csv%s\n",
        quality.size(), loader.dataset().describe().c_str(), mean.l1, mean.psnr, mean.ssim,
        stlpips.c_str(), rfid.c_str(), output_dir.c_str(),
        save_tensors ? ", reconstructions.safetensors" : "");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vq_reconstruct: error: %s\n", e.what());
    return 1;
  }
}
