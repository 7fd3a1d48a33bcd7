#include "tools/codebook_analysis.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "models/codebook_stats.h"
#include "tools/plot.h"
#include "trainers/metrics.h"
#include "trainers/progress.h"

namespace vq::tools {

namespace {

// The codebook's two principal axes by power iteration on its covariance (D is at most a few
// hundred; 200 iterations are plenty for plotting).
std::vector<std::array<double, 2>> pca_2d(const Tensor& codes) {
  NoGradGuard no_grad;
  const Tensor e = codes.to(DType::Float64).cpu();
  const Tensor centred = sub(e, mean(e, {0}, true));
  const Tensor cov = matmul(centred.t(), centred);  // [D, D]
  const int64_t D = e.size(1);
  std::vector<Tensor> axes;
  Generator gen(3);
  for (int a = 0; a < 2; ++a) {
    Tensor v = randn({D, 1}, gen, DType::Float64);
    for (int it = 0; it < 200; ++it) {
      Tensor w = matmul(cov, v);
      for (const Tensor& prev : axes) w = sub(w, mul(prev, sum(mul(prev, w)).item()));  // deflate
      const double norm = std::sqrt(sum(mul(w, w)).item());
      if (norm < 1e-30) break;
      v = div(w, norm);
    }
    axes.push_back(v);
  }
  const auto p0 = matmul(centred, axes[0]).to_vector<double>(),
             p1 = matmul(centred, axes[1]).to_vector<double>();
  std::vector<std::array<double, 2>> out(p0.size());
  for (size_t i = 0; i < p0.size(); ++i) out[i] = {p0[i], p1[i]};
  return out;
}

}  // namespace

CodebookReport analyze_codebook(models::VQModel& model, train::DataLoader& loader,
                                double temperature, double active_threshold, uint64_t seed,
                                train::QualityMeter& quality, FidMeter& fid) {
  NoGradGuard no_grad;
  model.eval();
  models::Quantizer& q = model.quantizer();
  q.lookup_generator().set_state(seed, 0);
  CodebookReport r;
  r.temperature = temperature;
  r.num_codes = q.num_codes();
  r.counts.assign(r.num_codes, 0);
  const Device device = model.parameters().at(0).device();
  train::ProgressBar progress("codebook analysis", loader.batches_per_pass(), 20);
  while (auto batch = loader.next()) {
    const Tensor x = batch->images.to(device);
    const Tensor z = model.encode_latent(x);
    const Tensor indices = q.lookup(z, temperature);
    const Tensor reconstruction = model.decode(q.codes_for(indices));
    const int64_t n = x.size(0);
    quality.add(reconstruction, batch->images);
    fid.add(reconstruction, x);
    const auto counts = bincount(indices.reshape({-1}), r.num_codes).to_vector<int64_t>();
    const models::CodebookStats s =
        models::codebook_stats(counts, std::vector<double>(r.num_codes, 0.0), 1.0, 1.0);
    r.batches.push_back(
        {n, s.used_codes, s.batch_utilization, s.batch_entropy, s.batch_norm_entropy});
    for (int64_t k = 0; k < r.num_codes; ++k) r.counts[k] += counts[k];
    r.num_images += n;
    r.num_vectors += indices.numel();
    progress.update(static_cast<int64_t>(r.batches.size()), fmt::format("{} images", r.num_images));
  }
  progress.finish(fmt::format("{} images", r.num_images));
  VQ_CHECK(r.num_images > 0, "codebook analysis: no images could be read from {}",
           loader.dataset().describe());
  r.ema_counts = q.ema_counts();
  const models::CodebookStats s =
      models::codebook_stats(r.counts, r.ema_counts, active_threshold, 1.0);
  r.used_codes = s.used_codes;
  r.dead_codes = r.num_codes - s.used_codes;
  r.utilization = s.batch_utilization;
  r.entropy = s.batch_entropy;
  r.normalized_entropy = s.batch_norm_entropy;
  r.perplexity = s.perplexity;
  r.ema_active_codes = s.active_codes_ema;
  for (const auto& b : r.batches)
    r.mean_batch_utilization += b.utilization / static_cast<double>(r.batches.size());
  r.quality = quality.mean();
  r.stlpips_images = quality.stlpips_measured();
  r.stlpips_note = quality.stlpips_description();
  if (fid.measures() && fid.images() >= 2) {
    std::printf("codebook analysis: Fréchet distance of %lld x %lld-d features...\n",
                static_cast<long long>(fid.images()),
                static_cast<long long>(fid.originals().dims()));
    std::fflush(stdout);
  }
  r.rfid = fid.fid();
  r.rfid_images = fid.images();
  r.rfid_note = fid.description();

  const Tensor codes =
      q.codes_for(arange(0, r.num_codes, DType::Int64, device).view({1, 1, r.num_codes}))
          .reshape({-1, r.num_codes})
          .t()
          .cpu();  // [K, D]
  for (double v : sqrt(sum(mul(codes, codes), {1})).to_vector<double>()) r.code_norms.push_back(v);
  r.pca = pca_2d(codes);

  const double gap = std::abs(static_cast<double>(r.ema_active_codes - r.used_codes)) / r.num_codes;
  if (gap > 0.1) {
    r.verdict = fmt::format(
        "The two views disagree: the checkpoint's EMA statistics call {} of {} codes active "
        "({:.1f}%), but only {} "
        "codes ({:.1f}%) are used on this data set (the seed's \"statistics inconsistency\").",
        r.ema_active_codes, r.num_codes, 100.0 * r.ema_active_codes / r.num_codes, r.used_codes,
        100 * r.utilization);
  } else {
    r.verdict = fmt::format(
        "The EMA statistics ({} active codes) and the real usage ({} codes used) agree.",
        r.ema_active_codes, r.used_codes);
  }
  return r;
}

std::string report_summary_json(const CodebookReport& r, const std::string& model_path,
                                const std::string& data) {
  nlohmann::ordered_json j = {{"model_path", model_path},
                              {"data", data},
                              {"num_images", r.num_images},
                              {"num_vectors", r.num_vectors},
                              {"temperature", r.temperature},
                              {"num_codes", r.num_codes},
                              {"used_codes", r.used_codes},
                              {"utilization", r.utilization},
                              {"entropy", r.entropy},
                              {"normalized_entropy", r.normalized_entropy},
                              {"perplexity", r.perplexity},
                              {"dead_codes", r.dead_codes},
                              {"mean_batch_utilization", r.mean_batch_utilization},
                              {"ema_active_codes", r.ema_active_codes},
                              {"l1", r.quality.l1},
                              {"psnr", r.quality.psnr},
                              {"ssim", r.quality.ssim},
                              {"stlpips_vgg", r.quality.stlpips_vgg},
                              {"stlpips_alex", r.quality.stlpips_alex},
                              {"stlpips_images", r.stlpips_images},
                              {"rfid", r.rfid},
                              {"rfid_images", r.rfid_images},
                              {"rfid_note", r.rfid_note},
                              {"verdict", r.verdict}};
  return j.dump(2);
}

std::string report_table(const CodebookReport& r) {
  std::string out;
  auto row = [&out](const std::string& k, const std::string& v) {
    out += fmt::format("  {:<34} {}\n", k, v);
  };
  row("images / latent vectors", fmt::format("{} / {}", r.num_images, r.num_vectors));
  row("code assignment", r.temperature > 0 ? fmt::format("sampled, temperature {}", r.temperature)
                                           : "argmin (nearest code)");
  row("codebook size K", fmt::format("{}", r.num_codes));
  row("used codes (whole data set)",
      fmt::format("{} ({:.1f}%)", r.used_codes, 100 * r.utilization));
  row("dead codes (never used)", fmt::format("{}", r.dead_codes));
  row("entropy / normalised", fmt::format("{:.3f} nats / {:.3f}", r.entropy, r.normalized_entropy));
  row("perplexity", fmt::format("{:.1f}", r.perplexity));
  row("mean per-batch utilisation", fmt::format("{:.1f}%", 100 * r.mean_batch_utilization));
  row("active codes by EMA statistics",
      fmt::format("{} ({:.1f}%)", r.ema_active_codes, 100.0 * r.ema_active_codes / r.num_codes));
  row("reconstruction L1 / PSNR / SSIM",
      fmt::format("{:.4f} / {:.2f} dB / {:.4f}", r.quality.l1, r.quality.psnr, r.quality.ssim));
  row("ST-LPIPS VGG16 / AlexNet",
      r.stlpips_images > 0 ? fmt::format("{:.4f} / {:.4f} (first {} images)", r.quality.stlpips_vgg,
                                         r.quality.stlpips_alex, r.stlpips_images)
                           : r.stlpips_note);
  row("rFID", rfid_text(r.rfid, r.rfid_images, r.rfid_note));
  return out + "  " + r.verdict + "\n";
}

std::string per_code_csv(const CodebookReport& r) {
  std::string out = "code,count,fraction,ema_cluster_size,vector_norm\n";
  for (int64_t k = 0; k < r.num_codes; ++k) {
    out += fmt::format("{},{},{:.6g},{:.6g},{:.6g}\n", k, r.counts[k],
                       static_cast<double>(r.counts[k]) / r.num_vectors, r.ema_counts[k],
                       r.code_norms[k]);
  }
  return out;
}

std::string per_batch_csv(const CodebookReport& r) {
  std::string out = "batch,images,used_codes,utilization,entropy,normalized_entropy\n";
  for (size_t b = 0; b < r.batches.size(); ++b) {
    const auto& row = r.batches[b];
    out += fmt::format("{},{},{},{:.6g},{:.6g},{:.6g}\n", b, row.images, row.used_codes,
                       row.utilization, row.entropy, row.norm_entropy);
  }
  return out;
}

void write_plots(const CodebookReport& r, const std::string& dir) {
  std::vector<double> sorted(r.counts.begin(), r.counts.end());
  std::sort(sorted.rbegin(), sorted.rend());
  for (double& v : sorted) v /= static_cast<double>(r.num_vectors);
  bar_chart(
      dir + "/usage_sorted.png", sorted,
      {fmt::format("Code usage, most used first ({} of {} codes used)", r.used_codes, r.num_codes),
       "code rank", "share of latent vectors"});
  std::vector<double> counts(r.counts.begin(), r.counts.end());
  histogram(dir + "/usage_histogram.png", counts,
            std::min<int>(50, std::max<int>(5, static_cast<int>(r.num_codes / 4))),
            {"How often codes are used", "vectors assigned to a code", "number of codes"});
  std::vector<double> x, y, size;
  for (int64_t k = 0; k < r.num_codes; ++k) {
    x.push_back(r.pca[k][0]);
    y.push_back(r.pca[k][1]);
    size.push_back(static_cast<double>(r.counts[k]));
  }
  scatter(dir + "/codebook_pca.png", x, y, size,
          {"Codebook, first two principal components (size = usage, x = unused)", "PC 1", "PC 2"});
}

}  // namespace vq::tools
