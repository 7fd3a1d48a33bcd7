#include "models/codebook_stats.h"

#include <cmath>

#include "autograd/error.h"

namespace vq::models {

double entropy_of_counts(const std::vector<double>& counts) {
  double total = 0;
  for (double c : counts) total += c;
  if (total <= 0) return 0.0;
  double h = 0;
  for (double c : counts) {
    if (c > 0) h -= (c / total) * std::log(c / total);
  }
  return h;
}

CodebookStats codebook_stats(const std::vector<int64_t>& batch_counts,
                             const std::vector<double>& ema_counts, double active_threshold,
                             double dead_threshold) {
  VQ_CHECK(batch_counts.size() == ema_counts.size(),
           "codebook_stats: {} batch counts but {} EMA counts", batch_counts.size(),
           ema_counts.size());
  CodebookStats s;
  s.num_codes = static_cast<int64_t>(batch_counts.size());
  const double log_k = s.num_codes > 1 ? std::log(static_cast<double>(s.num_codes)) : 1.0;
  std::vector<double> batch(batch_counts.begin(), batch_counts.end());
  for (int64_t c : batch_counts) {
    s.num_vectors += c;
    s.used_codes += c > 0;
  }
  s.batch_utilization = s.num_codes ? static_cast<double>(s.used_codes) / s.num_codes : 0.0;
  s.batch_entropy = entropy_of_counts(batch);
  s.batch_norm_entropy = s.batch_entropy / log_k;
  s.perplexity = std::exp(s.batch_entropy);
  for (double c : ema_counts) {
    s.active_codes_ema += c >= active_threshold;
    s.dead_codes += c < dead_threshold;
  }
  s.ema_entropy = entropy_of_counts(ema_counts);
  s.ema_norm_entropy = s.ema_entropy / log_k;
  return s;
}

}  // namespace vq::models
