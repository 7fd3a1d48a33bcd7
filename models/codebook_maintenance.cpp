// Codebook maintenance of the vector quantizer (no gradients): the EMA update, restarts of dead
// or rarely used codes, CVQ re-seeding, k-means initialisation and the seed's codebook expansion.
// All of them keep N (cluster_size) and S (embed_avg) consistent with the codes: S_k = e_k N_k
// (the EMA update divides by the smoothed N~_k, which differs from N_k only by the tiny eps).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "models/codebook_math.h"
#include "models/vector_quantizer.h"

namespace vq::models {

namespace {

// Laplace smoothing keeps unused codes' counts positive: N~_k = (N_k + eps) / (N + K eps) N.
Tensor smoothed_counts(const Tensor& cluster_size, double eps) {
  const double n = sum(cluster_size).item();
  const double K = static_cast<double>(cluster_size.size(0));
  return mul(div(add(cluster_size, eps), n + K * eps), n);
}

}  // namespace

void VectorQuantizer::ema_update(const Tensor& h, const Tensor& indices) {
  NoGradGuard no_grad;
  const int64_t K = config_.n_embed;
  const double decay = config_.ema_decay;
  const Tensor counts = bincount(indices, K).to(h.dtype());    // n_k
  table_->cluster_size.mul_(decay).add_(counts, 1.0 - decay);  // N_k
  if (config_.codebook != "ema") return;                       // a usage monitor only
  const Tensor sums = index_add(zeros({K, lookup_dim_}, h.dtype(), h.device()), 0, indices, h);
  table_->embed_avg.mul_(decay).add_(sums, 1.0 - decay);  // S_k
  // NOTE: like taming's EmbeddingEMA, the codebook starts with S_k = e_k but N_k = 0, so the first
  // update divides each unused code's decayed S_k by a smoothed count near eps and flings it far
  // out, from where it shrinks back by a factor `decay` per step while unused. Restarts (or k-means
  // init, which sets S and N consistently) give such codes a real place in the data.
  table_->weight.copy_(div(
      table_->embed_avg, smoothed_counts(table_->cluster_size, config_.ema_epsilon).unsqueeze(1)));
}

int64_t VectorQuantizer::restart_codes(const std::vector<int64_t>& codes, const Tensor& h) {
  if (codes.empty()) return 0;
  NoGradGuard no_grad;
  const int64_t M = h.size(0), n = static_cast<int64_t>(codes.size());
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < n; ++i) rows.push_back(gen_.next_below(M));
  Tensor values = index_select(h, 0, from_vector(rows, {n}, h.device()));
  if (config_.restart_noise > 0) {
    const double rms = std::sqrt(mean(mul(h, h)).item());
    values = add(values, mul(randn(values.shape(), gen_, h.dtype(), h.device()),
                             config_.restart_noise * rms));
  }
  assign_rows(table_->weight, codes, values);
  // The restarted code's statistics say "seen `count` times, always at this vector", so its
  // mean S_k / N_k is exactly the new vector and it is not dead again at once.
  const double count = std::max(config_.dead_code_threshold, 1.0);
  assign_rows(table_->cluster_size, codes, full({n}, count, h.dtype(), h.device()));
  if (table_->embed_avg.defined()) assign_rows(table_->embed_avg, codes, mul(values, count));
  return n;
}

int64_t VectorQuantizer::restart_dead_codes(const Tensor& h) {
  const std::vector<double> counts = ema_counts();
  std::vector<int64_t> dead;
  for (int64_t k = 0; k < static_cast<int64_t>(counts.size()); ++k) {
    if (counts[k] < config_.dead_code_threshold) dead.push_back(k);
  }
  return restart_codes(dead, h);
}

void VectorQuantizer::cvq_reseed(const Tensor& h, const Tensor& d) {
  NoGradGuard no_grad;
  const int64_t K = config_.n_embed;
  // The pull a_k = exp(-K * usage_k * cvq_rate) with usage_k = N_k / sum(N): K usage_k is 1 at
  // uniform use, so a busy code moves by exp(-cvq_rate) of the way and an unused one all the way.
  const double total = std::max(sum(table_->cluster_size).item(), 1e-12);
  const Tensor pull =
      exp(mul(table_->cluster_size, -static_cast<double>(K) * config_.cvq_rate / total))
          .unsqueeze(1);
  // The batch vector nearest each code, by the distances this forward used (before the update).
  const Tensor anchors = index_select(h, 0, argmin(d, 0));
  const Tensor moved = add(mul(table_->weight, rsub(1.0, pull)), mul(anchors, pull));
  if (table_->embed_avg.defined()) {
    // Keep S_k / N~_k equal to the moved code.
    table_->embed_avg.copy_(
        mul(moved, smoothed_counts(table_->cluster_size, config_.ema_epsilon).unsqueeze(1)));
  }
  table_->weight.copy_(moved);
}

void VectorQuantizer::kmeans_init(const Tensor& h) {
  NoGradGuard no_grad;
  const int64_t M = h.size(0), K = config_.n_embed;
  // Start from K distinct random vectors (with repeats only when the batch has fewer than K).
  Tensor start =
      M >= K ? randperm(M, gen_, h.device()).narrow(0, 0, K) : randint(0, M, {K}, gen_, h.device());
  Tensor centres = index_select(h, 0, start);
  Tensor counts;
  for (int64_t it = 0; it <= config_.kmeans_iterations; ++it) {
    const Tensor assignment = argmin(squared_distances(h, centres), 1);
    counts = bincount(assignment, K).to(h.dtype());
    if (it == config_.kmeans_iterations) break;  // the last pass only counts
    const Tensor sums = index_add(zeros_like(centres), 0, assignment, h);
    // An empty cluster keeps its centre.
    const Tensor filled = gt(counts, 0.0).to(h.dtype()).unsqueeze(1);
    centres = add(mul(div(sums, clamp(counts, 1.0, 1e30).unsqueeze(1)), filled),
                  mul(centres, rsub(1.0, filled)));
  }
  // The EMA statistics start as if the centres had been seen `count` times: S_k = e_k N_k. An
  // empty cluster counts as seen once at its centre; with N_k = 0 the first EMA update would
  // move it to the origin.
  counts = clamp(counts, 1.0, 1e30);
  table_->weight.copy_(centres);
  table_->cluster_size.copy_(counts);
  if (table_->embed_avg.defined()) table_->embed_avg.copy_(mul(centres, counts.unsqueeze(1)));
  initialized_.fill_(1);
}

std::string VectorQuantizer::end_epoch(int64_t epoch) {
  if (!last_inputs_.defined()) return {};
  std::vector<std::string> done;
  // Expansion is decided on the epoch's real counts, before resets revive codes (a restarted code
  // has a count of at least 1 and would look active).
  if (config_.expand) {
    const std::string expanded = expand_codebook();
    if (!expanded.empty()) done.push_back(expanded);
  }
  if (config_.dead_code_reset == "epoch") {
    const int64_t n = restart_dead_codes(last_inputs_);
    if (n > 0) done.push_back(fmt::format("restarted {} dead codes", n));
  }
  if (config_.low_usage_reset_interval > 0 && (epoch + 1) % config_.low_usage_reset_interval == 0) {
    const std::vector<double> counts = ema_counts();
    std::vector<int64_t> order(counts.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return counts[a] < counts[b]; });
    order.resize(static_cast<size_t>(std::floor(config_.low_usage_reset_fraction * counts.size())));
    const int64_t n = restart_codes(order, last_inputs_);
    if (n > 0) done.push_back(fmt::format("reset the {} least-used codes", n));
  }
  return fmt::format("{}", fmt::join(done, "; "));
}

std::string VectorQuantizer::expand_codebook() {
  const int64_t K = config_.n_embed;
  const std::vector<double> counts = ema_counts();
  const int64_t active = std::count_if(counts.begin(), counts.end(),
                                       [&](double c) { return c >= config_.active_threshold; });
  if (K >= config_.expand_max_codes || active < config_.expand_active_fraction * K) return {};
  NoGradGuard no_grad;
  const int64_t K2 = std::min(2 * K, config_.expand_max_codes), extra = K2 - K;
  // New codes: perturbed copies of the most used codes, each taking half of its parent's count.
  std::vector<int64_t> order(K);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return counts[a] > counts[b]; });
  order.resize(extra);
  const Tensor& w = table_->weight;
  const Tensor parents = from_vector(order, {extra}, w.device());
  const double rms = std::sqrt(mean(mul(w, w)).item());
  const Tensor children =
      add(index_select(w, 0, parents),
          mul(randn({extra, lookup_dim_}, gen_, w.dtype(), w.device()), 0.01 * rms));
  std::vector<double> halved = counts;
  for (int64_t p : order) halved[p] /= 2;
  std::vector<double> child_counts;
  for (int64_t p : order) child_counts.push_back(halved[p]);
  const Tensor cs =
      concat({from_vector(halved, {K}, w.device()), from_vector(child_counts, {extra}, w.device())},
             0)
          .to(w.dtype());
  const Tensor weight = concat({w.detach(), children}, 0);
  table_->weight.set_data(weight.clone());
  table_->cluster_size.set_data(cs);
  table_->embed_avg.set_data(mul(weight, cs.unsqueeze(1)));
  config_.n_embed = K2;
  return fmt::format("expanded the codebook from {} to {} codes ({} of {} active by EMA counts)", K,
                     K2, active, K);
}

}  // namespace vq::models
