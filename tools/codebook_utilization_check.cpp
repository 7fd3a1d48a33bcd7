// codebook_utilization_check: measures a trained model's codebook over a whole data set (the
// seed's tool) and compares it with the model's own EMA statistics. Writes summary.json and,
// with --save_details / --plot, per-code and per-batch CSVs and PNG figures.
#include <cstdio>
#include <filesystem>

#include "autograd/ops.h"
#include "nn/file_io.h"
#include "tools/codebook_analysis.h"
#include "tools/model_flags.h"

int main(int argc, char** argv) {
  using namespace vq;
  tools::ModelFlags model_flags;
  std::string data_dir = "fashion-mnist:test", output_dir = "codebook_analysis", fid_weights;
  int64_t image_size = 0, in_channels = 0, batch_size = 32, limit = 0, seed = 0,
          stlpips_images = 1000;
  double temperature = 0.0;
  bool plot = false, save_details = false;
  train::Flags flags(
      "codebook_utilization_check",
      "Counts which codes a trained VQGAN really uses over a whole data set, next to what its EMA "
      "statistics claim.");
  model_flags.add_to(flags, "model or checkpoint (.safetensors) written by train_vqvae_improved");
  flags.add_string("data_dir", &data_dir, tools::kDataDirHelp);
  flags.add_string("output_dir", &output_dir, "where summary.json (and CSVs, plots) go");
  flags.add_int("image_size", &image_size,
                "must match the model's resolution (default: the model's)", 0);
  flags.add_int("in_channels", &in_channels,
                "must match the model's channels (default: the model's)", 0);
  flags.add_int("batch_size", &batch_size, "images per batch", 1);
  flags.add_bool("plot", &plot, "write usage_sorted.png, usage_histogram.png and codebook_pca.png");
  flags.add_bool("save_details", &save_details, "write per_code.csv and per_batch.csv");
  flags.add_double(
      "temperature", &temperature,
      "0: nearest code (argmin); T > 0: sample codes from softmax(-d/T) as in training", 0);
  flags.add_int("limit", &limit, "use only the first N images; 0 = all", 0);
  flags.add_int("seed", &seed, "seed for sampled assignment (temperature > 0)", 0);
  flags.add_int("stlpips_images", &stlpips_images,
                "images that also get ST-LPIPS (VGG16 ~25 ms each at 28x28 on 2 cores); 0 = none, "
                "-1 = all",
                -1);
  flags.add_string("fid_weights", &fid_weights, tools::kFidWeightsHelp);
  try {
    if (!flags.parse(argc, argv)) return 0;
    const train::LoadedModel loaded = model_flags.load();
    const models::ModelConfig& mc = loaded.config.model;
    VQ_CHECK(image_size == 0 || image_size == mc.resolution,
             "--image_size {} disagrees with the model, which was trained at {}x{}", image_size,
             mc.resolution, mc.resolution);
    VQ_CHECK(in_channels == 0 || in_channels == mc.in_channels,
             "--in_channels {} disagrees with the model's {} channels", in_channels,
             mc.in_channels);
    if (!loaded.note.empty()) std::printf("note: %s\n", loaded.note.c_str());
    train::DataLoader loader =
        tools::model_data(data_dir, mc, train::LoaderOptions::single_pass(batch_size, limit));
    std::printf("codebook_utilization_check: %s on %s\n", model_flags.model_path.c_str(),
                loader.dataset().describe().c_str());
    const Device device = parse_device(model_flags.device);
    train::QualityMeter quality(stlpips_images, mc.resolution, device);
    tools::FidMeter fid(fid_weights, device);
    const tools::CodebookReport report = tools::analyze_codebook(
        *loaded.model, loader, temperature, loaded.config.quantizer.active_threshold,
        static_cast<uint64_t>(seed), quality, fid);
    std::filesystem::create_directories(output_dir);
    auto write = [&](const std::string& name, const std::string& text) {
      nn::write_file_atomically(output_dir + "/" + name, text);
    };
    write("summary.json",
          tools::report_summary_json(report, model_flags.model_path, loader.dataset().describe()) +
              "\n");
    if (save_details) {
      write("per_code.csv", tools::per_code_csv(report));
      write("per_batch.csv", tools::per_batch_csv(report));
    }
    if (plot) tools::write_plots(report, output_dir);
    std::printf("%s", tools::report_table(report).c_str());
    if (loader.bad_images() > 0)
      std::printf("  skipped %lld unreadable images\n",
                  static_cast<long long>(loader.bad_images()));
    std::printf("wrote %s/summary.json%s%s\n", output_dir.c_str(),
                save_details ? ", per_code.csv, per_batch.csv" : "",
                plot ? ", usage_sorted.png, usage_histogram.png, codebook_pca.png" : "");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "codebook_utilization_check: error: %s\n", e.what());
    return 1;
  }
}
