// Shared quantizer pieces: configuration checks, their one-line description, and the factory.
#include "models/fsq.h"
#include "models/vector_quantizer.h"

#include <fmt/ranges.h>

namespace vq::models {

Tensor Quantizer::flatten_latents(const Tensor& z, int64_t embed_dim, const char* who) {
  VQ_CHECK(z.dim() == 4 && z.size(1) == embed_dim, "{}: expected [N, {}, h, w], got {}", who,
           embed_dim, shape_str(z.shape()));
  return z.permute({0, 2, 3, 1}).reshape({z.size(0) * z.size(2) * z.size(3), embed_dim});
}

CodebookStats QuantizerOutput::stats() const {
  return codebook_stats(batch_counts.to_vector<int64_t>(), ema_counts.to_vector<double>(),
                        active_threshold, dead_threshold);
}

std::shared_ptr<Quantizer> make_quantizer(const QuantizerConfig& config, int64_t embed_dim,
                                          uint64_t seed, Generator& init) {
  if (config.kind == "fsq") {
    return std::make_shared<FiniteScalarQuantizer>(config, embed_dim, seed, init);
  }
  return std::make_shared<VectorQuantizer>(config, embed_dim, seed, init);
}

void QuantizerConfig::validate() const {
  VQ_CHECK(kind == "vq" || kind == "fsq", "quantizer: kind must be 'vq' or 'fsq', got '{}'", kind);
  if (kind == "fsq") {
    VQ_CHECK(!fsq_levels.empty(), "quantizer: fsq_levels must list at least one level");
    double codes = 1;
    for (int64_t l : fsq_levels) {
      VQ_CHECK(l >= 2, "quantizer: every FSQ level must be >= 2, got {}", l);
      codes *= static_cast<double>(l);
    }
    VQ_CHECK(codes <= static_cast<double>(kMaxCodes),
             "quantizer: fsq_levels {} give {:.3g} codes, above the limit of {} (kMaxCodes)",
             fmt::join(fsq_levels, "x"), codes, kMaxCodes);
    return;
  }
  VQ_CHECK(n_embed >= 2 && n_embed <= kMaxCodes,
           "quantizer: n_embed must be in [2, {}] (kMaxCodes), got {}", kMaxCodes, n_embed);
  VQ_CHECK(!expand || expand_max_codes <= kMaxCodes,
           "quantizer: expand_max_codes must be at most {} (kMaxCodes), got {}", kMaxCodes,
           expand_max_codes);
  VQ_CHECK(codebook == "ema" || codebook == "learned" || codebook == "simvq",
           "quantizer: codebook must be 'ema', 'learned' or 'simvq', got '{}'", codebook);
  VQ_CHECK(codebook_dim >= 0 && codebook_dim <= kMaxCodeDim,
           "quantizer: codebook_dim must be in [0, {}] (0: no projection), got {}", kMaxCodeDim,
           codebook_dim);
  VQ_CHECK(ema_decay >= 0.0 && ema_decay < 1.0, "quantizer: ema_decay must be in [0, 1), got {}",
           ema_decay);
  VQ_CHECK(ema_epsilon > 0.0, "quantizer: ema_epsilon must be > 0, got {}", ema_epsilon);
  VQ_CHECK(temperature >= 0.0, "quantizer: temperature must be >= 0, got {}", temperature);
  VQ_CHECK(
      beta >= 0.0 && entropy_weight >= 0.0 && confidence_weight >= 0.0 && diversity_weight >= 0.0,
      "quantizer: loss weights must be >= 0 (beta {}, entropy {}, confidence {}, diversity {})",
      beta, entropy_weight, confidence_weight, diversity_weight);
  VQ_CHECK(entropy_temperature > 0.0, "quantizer: entropy_temperature must be > 0, got {}",
           entropy_temperature);
  VQ_CHECK(entropy_loss == "seed" || entropy_loss == "lfq",
           "quantizer: entropy_loss must be 'seed' or 'lfq', got '{}'", entropy_loss);
  VQ_CHECK(init == "uniform" || init == "normal" || init == "kmeans",
           "quantizer: init must be uniform, normal or kmeans, got '{}'", init);
  VQ_CHECK(dead_code_reset == "off" || dead_code_reset == "epoch" || dead_code_reset == "step",
           "quantizer: dead_code_reset must be off, epoch or step, got '{}'", dead_code_reset);
  VQ_CHECK(low_usage_reset_fraction >= 0.0 && low_usage_reset_fraction <= 1.0,
           "quantizer: low_usage_reset_fraction must be in [0, 1], got {}",
           low_usage_reset_fraction);
  VQ_CHECK(restart_noise >= 0.0 && cvq_rate >= 0.0,
           "quantizer: restart_noise and cvq_rate must be >= 0");
  VQ_CHECK(kmeans_iterations >= 0 && low_usage_reset_interval >= 0,
           "quantizer: kmeans_iterations ({}) and low_usage_reset_interval ({}) must be >= 0",
           kmeans_iterations, low_usage_reset_interval);
  VQ_CHECK(dead_code_threshold >= 0.0 && active_threshold >= 0.0,
           "quantizer: dead_code_threshold ({}) and active_threshold ({}) must be >= 0",
           dead_code_threshold, active_threshold);
  VQ_CHECK(expand_active_fraction > 0.0 && expand_active_fraction <= 1.0,
           "quantizer: expand_active_fraction must be in (0, 1], got {}", expand_active_fraction);
  VQ_CHECK(!expand || codebook == "ema", "quantizer: codebook expansion needs the EMA codebook");
  VQ_CHECK(!expand || expand_max_codes >= n_embed,
           "quantizer: expand_max_codes {} is below n_embed {}", expand_max_codes, n_embed);
  VQ_CHECK(diversity_weight == 0.0 || codebook == "learned",
           "quantizer: the diversity loss applies to learned codebooks (the EMA codebook gets no "
           "gradient)");
  VQ_CHECK(codebook != "simvq" || (dead_code_reset == "off" && low_usage_reset_interval == 0 &&
                                   init != "kmeans" && cvq_rate == 0.0 && !expand),
           "quantizer: a simvq codebook (a frozen basis times a learned map) cannot set single "
           "codes: use it without "
           "restarts, low-usage resets, k-means init, CVQ or expansion");
}

std::string QuantizerConfig::describe(int64_t embed_dim) const {
  if (kind == "fsq") {
    int64_t codes = 1;
    for (int64_t l : fsq_levels) codes *= l;
    return fmt::format("FSQ, levels [{}] = {} codes, D {} projected to {} dims",
                       fmt::join(fsq_levels, ", "), codes, embed_dim, fsq_levels.size());
  }
  std::string lookup = codebook_dim > 0 ? fmt::format(", lookup in {} dims", codebook_dim) : "";
  if (l2_normalize) lookup += ", l2-normalised";
  if (rotation_trick) lookup += ", rotation trick";
  const std::string entropy =
      entropy_loss == "lfq" ? fmt::format("entropy {} (lfq, gamma {})", entropy_weight, lfq_gamma)
                            : fmt::format("entropy {}", entropy_weight);
  const std::string low_usage =
      low_usage_reset_interval > 0
          ? fmt::format("{:.0f}% every {} epoch(s)", 100 * low_usage_reset_fraction,
                        low_usage_reset_interval)
          : "off";
  return fmt::format(
      "K {} x D {}, {}{}, decay {}, temperature {}, beta {} (warm-up {} epochs), {}, init {}, "
      "dead-code reset {} (< {}), low-usage reset {}{}, expansion {}",
      n_embed, embed_dim, codebook, lookup, ema_decay, temperature, beta, commitment_warmup_epochs,
      entropy, init, dead_code_reset, dead_code_threshold, low_usage,
      cvq_rate > 0 ? fmt::format(", CVQ rate {}", cvq_rate) : "",
      expand ? fmt::format("to {}", expand_max_codes) : "off");
}

}  // namespace vq::models
