// The analysis tool on a tiny trained model: its numbers agree with each other and with an
// independent count, the files it writes, and the command-line errors.
#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "autograd/node.h"
#include "fid_weights.h"
#include "nn/safetensors.h"
#include "test_util.h"
#include "tools/codebook_analysis.h"
#include "tools/plot.h"
#include "tools/token_files.h"
#include "trainer_fixture.h"
#include "trainers/data/image.h"
#include "trainers/metrics.h"
#include "trainers/model_io.h"
#include "trainers/trainer.h"

namespace vq::tools {
namespace {

class Tool : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    images_ = test::make_image_folder(test::temp_path("tool_images"), 24);
    out_ = test::temp_path("tool_run");
    train::train(test::tiny_config(images_, out_), "");
  }
  static std::string images_, out_;
  FidMeter no_fid_{"", kCPU};
};
std::string Tool::images_, Tool::out_;

TEST_F(Tool, ReportIsConsistentWithAnIndependentCount) {
  auto loaded = train::load_model(out_ + "/tiny.safetensors", kCPU);
  train::LoaderOptions lo = train::LoaderOptions::single_pass(5);
  train::DataLoader loader(train::open_dataset(images_, 1, 16), 1, 16, lo);
  train::QualityMeter quality(-1, 16, kCPU);
  const CodebookReport r = analyze_codebook(*loaded.model, loader, 0.0, 1.0, 0, quality, no_fid_);
  EXPECT_EQ(r.num_images, 24);
  EXPECT_EQ(r.num_vectors, 24 * 8 * 8);
  EXPECT_EQ(r.num_codes, 16);
  EXPECT_EQ(r.batches.size(), 5u);  // 5 + 5 + 5 + 5 + 4
  EXPECT_EQ(std::accumulate(r.counts.begin(), r.counts.end(), int64_t{0}), r.num_vectors);
  // Independent count: encode all images at once and count codes.
  NoGradGuard no_grad;
  Tensor all = Tensor::empty({24, 1, 16, 16});
  const auto ds = train::open_dataset(images_, 1, 16);
  for (int64_t i = 0; i < 24; ++i) ds->load(i, {}, all.data<float>() + i * 256);
  const auto counts =
      bincount(loaded.model->encode_indices(all).reshape({-1}), 16).to_vector<int64_t>();
  EXPECT_EQ(counts, r.counts);
  const int64_t used = std::count_if(counts.begin(), counts.end(), [](int64_t c) { return c > 0; });
  EXPECT_EQ(r.used_codes, used);
  EXPECT_EQ(r.dead_codes, 16 - used);
  EXPECT_NEAR(r.utilization, used / 16.0, 1e-12);
  EXPECT_GT(r.normalized_entropy, 0.0);
  EXPECT_LE(r.normalized_entropy, 1.0);
  EXPECT_NEAR(r.perplexity, std::exp(r.entropy), 1e-9);
  EXPECT_GT(r.quality.psnr, 5.0);
  // Six training steps give no reliable structure (SSIM near 0 either side; its values are checked
  // in test_trainer): only that it was measured.
  EXPECT_GT(r.quality.ssim, -1.0);
  EXPECT_LT(r.quality.ssim, 1.0);
  EXPECT_NE(r.stlpips_note.find("not measured"), std::string::npos) << r.stlpips_note;
  EXPECT_EQ(r.pca.size(), 16u);
  const auto j = nlohmann::json::parse(report_summary_json(r, "m", "d"));
  for (const char* key :
       {"num_codes", "used_codes", "utilization", "entropy", "normalized_entropy", "perplexity",
        "dead_codes", "mean_batch_utilization", "ema_active_codes", "num_images"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_NE(per_code_csv(r).find("code,count,fraction,ema_cluster_size,vector_norm\n0,"),
            std::string::npos);
  const std::string batches = per_batch_csv(r);
  EXPECT_EQ(std::count(batches.begin(), batches.end(), '\n'), 6);
}

TEST_F(Tool, SampledAssignmentUsesTheTemperature) {
  auto loaded = train::load_model(out_ + "/tiny.safetensors", kCPU);
  train::LoaderOptions lo = train::LoaderOptions::single_pass(24);
  train::DataLoader a(train::open_dataset(images_, 1, 16), 1, 16, lo),
      b(train::open_dataset(images_, 1, 16), 1, 16, lo);
  train::QualityMeter quality(0, 16, kCPU);
  const CodebookReport argmin = analyze_codebook(*loaded.model, a, 0.0, 1.0, 0, quality, no_fid_);
  const CodebookReport hot = analyze_codebook(*loaded.model, b, 1e6, 1.0, 0, quality, no_fid_);
  // At a huge temperature the sampling is nearly uniform over the 16 codes.
  EXPECT_GT(hot.normalized_entropy, 0.95);
  EXPECT_EQ(hot.used_codes, 16);
  EXPECT_NE(argmin.counts, hot.counts);
}

TEST_F(Tool, PlotsAreWritten) {
  auto loaded = train::load_model(out_ + "/tiny.safetensors", kCPU);
  train::LoaderOptions lo = train::LoaderOptions::single_pass(8);
  train::DataLoader loader(train::open_dataset(images_, 1, 16), 1, 16, lo);
  train::QualityMeter quality(0, 16, kCPU);
  const CodebookReport r = analyze_codebook(*loaded.model, loader, 0.0, 1.0, 0, quality, no_fid_);
  const std::string dir = test::temp_path("plots");
  write_plots(r, dir);
  for (const char* f : {"usage_sorted.png", "usage_histogram.png", "codebook_pca.png"}) {
    const train::Image8 png = train::decode_image(dir + "/" + f, 3);
    EXPECT_GE(png.width, 200) << f;
    EXPECT_GE(png.height, 150) << f;
    // A drawn chart, not a blank canvas: several distinct colours.
    std::set<uint32_t> colours;
    for (size_t i = 0; i + 2 < png.pixels.size(); i += 3)
      colours.insert(png.pixels[i] << 16 | png.pixels[i + 1] << 8 | png.pixels[i + 2]);
    EXPECT_GE(colours.size(), 3u) << f;
  }
}

// Each of a dozen series gets its own colour in the legend, which sits beside the plot area.
TEST(LineChart, GivesEverySeriesItsOwnColourAndRejectsRaggedSeries) {
  std::vector<Series> series;
  for (int i = 0; i < 12; ++i) {
    series.push_back({fmt::format("run {}", i), {0.0, 1.0, 2.0}, {0.0, 0.5 * i, 1.0 * i}});
  }
  const std::string path = test::temp_path("lines") + "/lines.png";
  line_chart(path, series, {"title", "step", "value"});
  const train::Image8 png = train::decode_image(path, 3);
  ASSERT_EQ(png.width, 1350);
  ASSERT_EQ(png.height, 650);
  // The legend swatch of series i: a 24x5 block at a known place right of the plot area.
  std::set<std::array<uint8_t, 3>> swatches;
  for (int i = 0; i < 12; ++i) {
    const int64_t px = png.width - 250 + 12, py = 70 + 22 * i + 6;
    const uint8_t* p = &png.pixels[(py * png.width + px) * 3];
    swatches.insert({p[0], p[1], p[2]});
  }
  EXPECT_EQ(swatches.size(), 12u);
  EXPECT_FALSE(swatches.contains({255, 255, 255}));
  series[3].y.pop_back();
  EXPECT_VQ_ERROR(line_chart(path, series, {}), "series 'run 3' has 3 x and 2 y values");
}

TEST_F(Tool, InspectListsTheTrainedModel) {
  const std::string text =
      nn::describe_safetensors(nn::read_safetensors_index(out_ + "/tiny.safetensors"));
  EXPECT_NE(text.find("encoder.conv_in.weight                      F32   [32, 1, 3, 3]"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("quantize.embedding.cluster_size"), std::string::npos);
  EXPECT_NE(text.find("vqgan.training_state"), std::string::npos);
  EXPECT_NE(text.find("\"preset\": \"improved\""), std::string::npos);
}

TEST_F(Tool, LoadErrorsAreClear) {
  EXPECT_VQ_ERROR(train::load_model("/nonexistent.safetensors", kCPU), "does not exist");
  const std::string junk = test::temp_path("junk") + "/model.safetensors";
  std::ofstream(junk) << "not a model";
  EXPECT_VQ_ERROR(train::load_model(junk, kCPU), "header length");
  // A plain weight file needs an explicit model config.
  const std::string plain = test::temp_path("plain") + "/weights.safetensors";
  nn::save_safetensors(plain, {{"encoder.conv_in.weight", zeros({64, 1, 3, 3})}});
  EXPECT_VQ_ERROR(train::load_model(plain, kCPU), "pass --model_config");
  // A config asking for more weights than the file holds is refused before the model is built.
  EXPECT_VQ_ERROR(train::load_model(plain, kCPU, "fmnist"),
                  "its config describes a model of 4.511e+06 weights, but the file holds only 576 "
                  "values");
  nn::save_safetensors(
      plain, {{"encoder.conv_in.weight", zeros({64, 1, 3, 3})}, {"unrelated", zeros({5'000'000})}});
  EXPECT_VQ_ERROR(train::load_model(plain, kCPU, "fmnist"), "the weights do not fit the model");
}

// Runs a tool program (they are built next to each other) on a model and a data folder with
// more arguments; returns the exit status, with the program's output in `text`.
int run_tool(const std::string& program, const std::string& model, const std::string& data,
             const std::string& args, std::string* text) {
  const std::string log = test::temp_path("tool_log") + "/out.txt";
  const int status =
      std::system(fmt::format("OMP_NUM_THREADS=1 {}/{} --model_path {} --data_dir {} "
                              "{} > {} 2>&1",
                              VQ_TOOLS_BIN_DIR, program, model, data, args, log)
                      .c_str());
  std::ifstream in(log);
  text->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return status;
}

// The programs end to end on the tiny model: their files hold what the library computes.
TEST_F(Tool, ProgramsWriteWhatTheLibraryComputes) {
  const std::string model = out_ + "/tiny.safetensors", dir = test::temp_path("programs");
  auto loaded = train::load_model(model, kCPU);
  NoGradGuard no_grad;
  Tensor all = Tensor::empty({24, 1, 16, 16});
  const auto ds = train::open_dataset(images_, 1, 16);
  for (int64_t i = 0; i < 24; ++i) ds->load(i, {}, all.data<float>() + i * 256);
  const Tensor expected_indices = loaded.model->encode_indices(all);
  std::string text;

  // Tokens: 24 images in batches of 7, shards of 10 (10 + 10 + 4), the image list beside them.
  const std::string tokens = dir + "/tokens";
  ASSERT_EQ(run_tool("vq_encode", model, images_,
                     "--batch_size 7 --shard_size 10 --output " + tokens, &text),
            0)
      << text;
  const TokenManifest manifest = read_token_manifest(tokens);
  EXPECT_EQ(manifest.num_images, 24);
  EXPECT_EQ(manifest.num_codes, 16);
  EXPECT_EQ(manifest.latent_size, 8);
  ASSERT_EQ(manifest.shards.size(), 3u);
  std::vector<Tensor> shards;
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(manifest.shards[k], std::make_pair(shard_file_name(static_cast<int64_t>(k)),
                                                 k < 2 ? int64_t{10} : int64_t{4}));
    const nn::SafetensorsFile f = nn::load_safetensors(tokens + "/" + manifest.shards[k].first);
    ASSERT_EQ(f.tensors.size(), 1u);  // no flips or labels asked for
    EXPECT_EQ(f.tensors[0].first, "indices");
    EXPECT_EQ(nn::read_safetensors_index(tokens + "/" + manifest.shards[k].first).entries[0].stored,
              "I16");  // 16 codes fit int16
    EXPECT_EQ(f.metadata.at("first"), std::to_string(10 * k));
    shards.push_back(f.tensors[0].second);
  }
  EXPECT_EQ(concat(shards, 0).to_vector<int64_t>(), expected_indices.to_vector<int64_t>());
  std::ifstream list(tokens + "/images.txt");
  std::vector<std::string> names;
  for (std::string line; std::getline(list, line);) names.push_back(line);
  ASSERT_EQ(names.size(), 24u);
  EXPECT_EQ(names[5], ds->item_name(5));

  ASSERT_EQ(run_tool("vq_reconstruct", model, images_, "--num 5 --save_tensors --output_dir " + dir,
                     &text),
            0)
      << text;
  const nn::SafetensorsFile recon = nn::load_safetensors(dir + "/reconstructions.safetensors");
  std::map<std::string, Tensor> t(recon.tensors.begin(), recon.tensors.end());
  EXPECT_EQ(t.at("inputs").shape(), (Shape{5, 1, 16, 16}));
  EXPECT_EQ(t.at("reconstructions").shape(), (Shape{5, 1, 16, 16}));
  EXPECT_EQ(t.at("indices").to_vector<int64_t>(),
            expected_indices.narrow(0, 0, 5).to_vector<int64_t>());
  const auto psnr = train::psnr_per_image(t.at("reconstructions"), t.at("inputs"));
  std::ifstream csv(dir + "/metrics.csv");
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "index,image,l1,psnr,ssim,stlpips_vgg,stlpips_alex");
  const auto l1 =
      mean(abs(sub(t.at("reconstructions"), t.at("inputs"))), {1, 2, 3}).to_vector<double>();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(std::getline(csv, line));
    EXPECT_EQ(
        line.rfind(fmt::format("{},{},{:.5f},{:.4f},", i, ds->item_name(i), l1[i], psnr[i]), 0), 0u)
        << line;
    // 16x16 images are below ST-LPIPS's smallest input: its cells stay empty.
    EXPECT_EQ(line.substr(line.size() - 2), ",,") << line;
  }
  EXPECT_FALSE(std::getline(csv, line));
  // The grid: the 5 inputs on top, their reconstructions below, each as 8-bit grey.
  const train::Image8 grid = train::decode_image(dir + "/reconstructions.png", 1);
  ASSERT_EQ(grid.width, 5 * 16 + 6 * 2);
  ASSERT_EQ(grid.height, 2 * 16 + 3 * 2);
  for (int64_t row = 0; row < 2; ++row) {
    const auto values = t.at(row == 0 ? "inputs" : "reconstructions").to_vector<float>();
    int64_t mismatches = 0;
    for (int64_t i = 0; i < 5; ++i) {
      for (int64_t y = 0; y < 16; ++y) {
        for (int64_t x = 0; x < 16; ++x) {
          const float v = std::clamp((values[(i * 16 + y) * 16 + x] + 1) * 127.5f, 0.0f, 255.0f);
          const int64_t px = (2 + row * 18 + y) * grid.width + 2 + i * 18 + x;
          mismatches += std::abs(grid.pixels[px] - std::lround(v)) > 1;
        }
      }
    }
    EXPECT_EQ(mismatches, 0) << (row == 0 ? "inputs" : "reconstructions");
  }

  ASSERT_EQ(run_tool("codebook_utilization_check", model, images_, "--output_dir " + dir, &text), 0)
      << text;
  const auto summary = nlohmann::json::parse(std::ifstream(dir + "/summary.json"));
  const auto counts = bincount(expected_indices.reshape({-1}), 16).to_vector<int64_t>();
  EXPECT_EQ(summary.at("used_codes").get<int64_t>(),
            std::count_if(counts.begin(), counts.end(), [](int64_t c) { return c > 0; }));
  EXPECT_EQ(summary.at("num_images").get<int64_t>(), 24);
  // A data set that does not fit the model is refused with a message naming the flag.
  EXPECT_NE(run_tool("codebook_utilization_check", model, images_, "--image_size 32", &text), 0);
  EXPECT_NE(text.find("--image_size 32 disagrees with the model, which was trained at 16x16"),
            std::string::npos)
      << text;
}

// rFID in both programs: the number with its image count in codebook_utilization_check's table
// and summary.json (random Inception weights, the first 8 images) and in vq_reconstruct's
// summary, why it is missing without --fid_weights, and a clear error for a weights file that is
// not there. (The number itself is checked against pytorch-fid in test_fid.)
TEST_F(Tool, RfidIsReportedWithItsImageCount) {
  const std::string model = out_ + "/tiny.safetensors", dir = test::temp_path("rfid");
  const std::string weights = test::random_fid_weights_file(dir + "/inception.safetensors");
  std::string text;
  ASSERT_EQ(run_tool("codebook_utilization_check", model, images_,
                     "--limit 8 --fid_weights " + weights + " --output_dir " + dir, &text),
            0)
      << text;
  EXPECT_NE(text.find("(8 images; FID is biased upwards on small sets)"), std::string::npos)
      << text;
  auto summary = nlohmann::json::parse(std::ifstream(dir + "/summary.json"));
  EXPECT_GT(summary.at("rfid").get<double>(), 0.0);
  EXPECT_EQ(summary.at("rfid_images").get<int64_t>(), 8);
  EXPECT_NE(summary.at("rfid_note").get<std::string>().find("rFID over 8 images"),
            std::string::npos);

  ASSERT_EQ(run_tool("vq_reconstruct", model, images_,
                     "--num 5 --fid_weights " + weights + " --output_dir " + dir, &text),
            0)
      << text;
  EXPECT_NE(text.find("rFID "), std::string::npos) << text;
  EXPECT_NE(text.find(" (5 images; FID is biased upwards on small sets)"), std::string::npos)
      << text;

  ASSERT_EQ(run_tool("codebook_utilization_check", model, images_, "--limit 4 --output_dir " + dir,
                     &text),
            0)
      << text;
  summary = nlohmann::json::parse(std::ifstream(dir + "/summary.json"));
  EXPECT_TRUE(summary.at("rfid").is_null());
  EXPECT_NE(text.find("rFID not measured: no --fid_weights file"), std::string::npos) << text;

  for (const char* program : {"vq_reconstruct", "codebook_utilization_check"}) {
    EXPECT_NE(
        run_tool(program, model, images_, "--fid_weights " + dir + "/absent.safetensors", &text),
        0);
    EXPECT_NE(text.find("absent.safetensors not found: make it from pytorch-fid's"),
              std::string::npos)
        << program << ": " << text;
  }
}

// vq_decode turns vq_encode's tokens back into vq_reconstruct's reconstructions, bit for bit (the
// same decoder on the same codes), the flipped copies into the mirrored images' reconstructions;
// labels come from the class folders; tokens the model cannot decode are refused.
TEST_F(Tool, DecodedTokensAreTheReconstructions) {
  const std::string model = out_ + "/tiny.safetensors", dir = test::temp_path("decode");
  // The same 24 images sorted into two class folders ("a": the first 12).
  const std::string classes = test::temp_path("classes");
  for (int i = 0; i < 24; ++i) {
    const std::string cls = classes + (i < 12 ? "/a" : "/b");
    std::filesystem::create_directories(cls);
    std::filesystem::copy_file(fmt::format("{}/img_{:03}.png", images_, i),
                               fmt::format("{}/img_{:03}.png", cls, i));
  }
  std::string text;
  ASSERT_EQ(run_tool("vq_encode", model, classes,
                     "--flip --labels --shard_size 16 --output " + dir + "/tokens", &text),
            0)
      << text;
  EXPECT_NE(text.find("24 images -> 2 shard(s) of indices [n, 8, 8] (K = 16), with flipped "
                      "copies, labels of 2 classes"),
            std::string::npos)
      << text;
  const TokenManifest manifest = read_token_manifest(dir + "/tokens");
  EXPECT_EQ(manifest.label_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(manifest.flipped);
  const nn::SafetensorsFile shard = nn::load_safetensors(dir + "/tokens/" + shard_file_name(1));
  std::map<std::string, Tensor> s(shard.tensors.begin(), shard.tensors.end());
  EXPECT_EQ(s.at("labels").to_vector<int64_t>(), std::vector<int64_t>(8, 1));  // images 16-23: b
  // A folder that holds tokens is not written over unless asked.
  EXPECT_NE(run_tool("vq_encode", model, classes, "--output " + dir + "/tokens", &text), 0);
  EXPECT_NE(text.find("already holds tokens (4 files); pass --overwrite to replace them"),
            std::string::npos)
      << text;
  // Without class folders there are no labels to take.
  EXPECT_NE(run_tool("vq_encode", model, images_, "--labels --output " + dir + "/x", &text), 0);
  EXPECT_NE(text.find("is not in a class folder"), std::string::npos) << text;

  ASSERT_EQ(run_tool("vq_reconstruct", model, classes, "--num 5 --save_tensors --output_dir " + dir,
                     &text),
            0)
      << text;
  auto decode = [&](const std::string& tokens, const std::string& args) {
    const std::string log = dir + "/decode.txt";
    const int status = std::system(
        fmt::format("OMP_NUM_THREADS=1 {}/vq_decode --model_path {} --tokens {} {} > {} 2>&1",
                    VQ_TOOLS_BIN_DIR, model, tokens, args, log)
            .c_str());
    std::ifstream in(log);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return status;
  };
  ASSERT_EQ(decode(dir + "/tokens", "--num 5 --save_tensors --output_dir " + dir), 0) << text;
  EXPECT_NE(text.find("vq_decode: 5 token maps [5, 8, 8] -> images [5, 1, 16, 16]"),
            std::string::npos)
      << text;
  const nn::SafetensorsFile decoded = nn::load_safetensors(dir + "/decoded.safetensors");
  const nn::SafetensorsFile recon = nn::load_safetensors(dir + "/reconstructions.safetensors");
  std::map<std::string, Tensor> r(recon.tensors.begin(), recon.tensors.end());
  ASSERT_EQ(decoded.tensors.size(), 1u);
  EXPECT_TRUE(test::allclose(decoded.tensors[0].second, r.at("reconstructions"), 0, 0));
  const auto names = nlohmann::json::parse(decoded.metadata.at("images"));
  ASSERT_EQ(names.size(), 5u);
  EXPECT_EQ(names[2].get<std::string>(), classes + "/a/img_002.png");
  EXPECT_EQ(train::decode_image(dir + "/decoded.png", 1).width, 5 * 16 + 6 * 2);
  // The flipped copies: the library's reconstruction of the mirrored images.
  ASSERT_EQ(decode(dir + "/tokens", "--flipped --num 5 --save_tensors --output_dir " + dir), 0)
      << text;
  {
    auto loaded = train::load_model(model, kCPU);
    NoGradGuard no_grad;
    const Tensor reversed = sub(scalar_tensor(15, DType::Int64), arange(0, 16, DType::Int64));
    const Tensor mirrored = index_select(r.at("inputs"), 3, reversed);
    const Tensor expected =
        clamp(loaded.model->decode_indices(loaded.model->encode_indices(mirrored)), -1.0, 1.0);
    const Tensor got = nn::load_safetensors(dir + "/decoded.safetensors").tensors[0].second;
    EXPECT_TRUE(test::allclose(got, expected, 0, 0)) << "flipped copies";
  }
  // A manifest that disagrees with its shards is refused (names would shift).
  {
    auto m = nlohmann::json::parse(std::ifstream(dir + "/tokens/tokens.json"));
    m["shards"][0]["images"] = 15;
    m["num_images"] = 23;
    std::filesystem::create_directories(dir + "/mismatch");
    std::filesystem::copy(dir + "/tokens", dir + "/mismatch");
    std::ofstream(dir + "/mismatch/tokens.json") << m.dump();
    EXPECT_EQ(decode(dir + "/mismatch", "--output_dir " + dir), 1 << 8);
    EXPECT_NE(text.find("holds 16 token maps, but tokens.json says 15"), std::string::npos) << text;
  }
  // One shard file decodes on its own; a value outside the model's 16 codes, another latent
  // size, and --flipped on tokens without flips are refused.
  ASSERT_EQ(decode(dir + "/tokens/" + shard_file_name(0), "--num 2 --output_dir " + dir), 0)
      << text;
  const Tensor indices = s.at("indices");
  const Tensor bad = indices.clone();
  bad.data<int64_t>()[3] = 16;
  nn::save_safetensors(dir + "/bad.safetensors", {{"indices", bad}});
  EXPECT_EQ(decode(dir + "/bad.safetensors", "--output_dir " + dir), 1 << 8);
  EXPECT_NE(text.find("token values run from 0 to 16, outside the model's codes 0..15"),
            std::string::npos)
      << text;
  nn::save_safetensors(dir + "/small.safetensors", {{"indices", indices.narrow(1, 0, 2)}});
  EXPECT_EQ(decode(dir + "/small.safetensors", "--output_dir " + dir), 1 << 8);
  EXPECT_NE(text.find("indices are int64 [8, 2, 8], but this model decodes int64 [N, 8, 8]"),
            std::string::npos)
      << text;
  EXPECT_EQ(decode(dir + "/small.safetensors", "--flipped --output_dir " + dir), 1 << 8);
  EXPECT_NE(text.find("has no tensor 'indices_flipped' (encoded without --flip)"),
            std::string::npos)
      << text;
  // --overwrite replaces the tokens (one shard now: the old second one is gone); a folder
  // encoded without --flip refuses --flipped; a damaged manifest is named.
  ASSERT_EQ(run_tool("vq_encode", model, classes, "--overwrite --output " + dir + "/tokens", &text),
            0)
      << text;
  EXPECT_FALSE(std::filesystem::exists(dir + "/tokens/" + shard_file_name(1)));
  EXPECT_EQ(read_token_manifest(dir + "/tokens").shards.size(), 1u);
  EXPECT_EQ(decode(dir + "/tokens", "--flipped --output_dir " + dir), 1 << 8);
  EXPECT_NE(text.find("--flipped, but the tokens were encoded without --flip"), std::string::npos)
      << text;
  std::ofstream(dir + "/tokens/tokens.json") << "{";
  EXPECT_EQ(decode(dir + "/tokens", "--output_dir " + dir), 1 << 8);
  EXPECT_NE(text.find("malformed token manifest"), std::string::npos) << text;
}

}  // namespace
}  // namespace vq::tools
