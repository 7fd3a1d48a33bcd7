// Codebook health statistics: the seed's six live metrics plus perplexity and dead codes.
//
// Two views that the seed's collapsed run confused:
//   * the current batch (real usage): which codes the batch's vectors were actually assigned to;
//   * the EMA counts (cumulative): the exponentially averaged per-code counts the quantizer keeps.
// A codebook can look fully "active" by its EMA counts (e.g. counting any count >= 0, or counts
// kept alive by smoothing) while each batch uses two codes; reporting both side by side shows it.
// Entropies are in nats; normalised entropies divide by log K (1 = uniform use of all K codes).
#pragma once

#include <cstdint>
#include <vector>

namespace vq::models {

struct CodebookStats {
  int64_t num_codes = 0;          // K
  int64_t num_vectors = 0;        // vectors quantised in the batch
  int64_t used_codes = 0;         // distinct codes in the batch
  double batch_utilization = 0;   // used_codes / K
  double batch_entropy = 0;       // H(batch code histogram)
  double batch_norm_entropy = 0;  // batch_entropy / log K
  double perplexity = 0;          // exp(batch_entropy): the effective number of codes in use
  int64_t active_codes_ema = 0;   // codes whose EMA count >= the active threshold
  double ema_entropy = 0;         // H(EMA counts normalised to a distribution)
  double ema_norm_entropy = 0;    // ema_entropy / log K
  int64_t dead_codes = 0;         // codes whose EMA count < the dead-code threshold
};

// Entropy (nats) of a histogram; zero counts contribute nothing; 0 for an empty histogram.
double entropy_of_counts(const std::vector<double>& counts);

CodebookStats codebook_stats(const std::vector<int64_t>& batch_counts,
                             const std::vector<double>& ema_counts, double active_threshold,
                             double dead_threshold);

}  // namespace vq::models
