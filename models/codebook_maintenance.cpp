// Codebook maintenance of the vector quantizer (no gradients): the EMA update, restarts of dead
// or rarely used codes, CVQ re-seeding, k-means initialisation and the seed's codebook expansion.
// All of them keep N (cluster_size) and S (embed_avg) consistent with the codes: S_k = e_k N_k
// (the EMA update divides by the smoothed N~_k, which differs from N_k only by the tiny eps).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "models/codebook_math.h"
#include "models/vector_quantizer.h"
#include "nn/dist/communicator.h"

namespace vq::models {

namespace {

// Laplace smoothing keeps unused codes' counts positive: N~_k = (N_k + eps) / (N + K eps) N.
// (n stays on the device: no host read.)
Tensor smoothed_counts(const Tensor& cluster_size, double eps) {
  const Tensor n = sum(cluster_size);
  const double K = static_cast<double>(cluster_size.size(0));
  return mul(div(add(cluster_size, eps), add(n, K * eps)), n);
}

// n row indices of [0, M): distinct while the batch has enough rows (a partial Fisher-Yates
// shuffle), then another round of distinct rows, and so on.
std::vector<int64_t> pick_rows(int64_t M, int64_t n, Generator& gen) {
  VQ_CHECK(M > 0 || n == 0, "VectorQuantizer: {} rows to pick from an empty batch", n);
  std::vector<int64_t> pool(M), rows;
  rows.reserve(n);
  while (static_cast<int64_t>(rows.size()) < n) {
    std::iota(pool.begin(), pool.end(), 0);
    const int64_t take = std::min(M, n - static_cast<int64_t>(rows.size()));
    for (int64_t i = 0; i < take; ++i) {
      std::swap(pool[i], pool[i + gen.next_below(M - i)]);
      rows.push_back(pool[i]);
    }
  }
  return rows;
}

}  // namespace

Tensor VectorQuantizer::sample_rows(const Tensor& h, int64_t n, double noise, Generator& gen) {
  NoGradGuard no_grad;
  const int64_t M = h.size(0);
  const std::vector<int64_t> rows = pick_rows(M, n, gen);
  Tensor values = index_select(h, 0, from_vector(rows, {n}, h.device()));
  // NOTE: a repeated row would make two identical codes, of which the nearest-code rule can only
  // ever pick one; repeats get at least 1% noise so that they split.
  constexpr double kRepeatNoise = 0.01;
  std::vector<double> scale(n);
  for (int64_t i = 0; i < n; ++i) scale[i] = i < M ? noise : std::max(noise, kRepeatNoise);
  if (*std::max_element(scale.begin(), scale.end()) == 0.0) return values;
  const double rms = std::sqrt(mean(mul(h, h)).item());
  const Tensor scales = mul(from_vector(scale, {n, 1}, h.device()).to(h.dtype()), rms);
  return add(values, mul(randn(values.shape(), gen, h.dtype(), h.device()), scales));
}

void VectorQuantizer::ema_update(const Tensor& h, const Tensor& indices, const Tensor& finite) {
  NoGradGuard no_grad;
  const int64_t K = config_.n_embed;
  const double decay = config_.ema_decay;
  // x <- decay x + (1 - decay) batch, where the batch is finite.
  auto decay_toward = [&](const Tensor& x, const Tensor& batch) {
    x.copy_(where(finite, add(mul(x, decay), mul(batch, 1.0 - decay)), x));
  };
  // n_k and the per-code sums over the global batch (every rank's rows).
  const Tensor counts = bincount(indices, K).to(h.dtype());
  dist::world().all_reduce_sum(counts);
  decay_toward(table_->cluster_size, counts);  // N_k
  if (config_.codebook != "ema") return;       // a usage monitor only
  const Tensor sums = index_add(zeros({K, lookup_dim_}, h.dtype(), h.device()), 0, indices, h);
  dist::world().all_reduce_sum(sums);
  decay_toward(table_->embed_avg, sums);  // S_k
  // NOTE: like taming's EmbeddingEMA, the codebook starts with S_k = e_k but N_k = 0, so the first
  // update divides each unused code's decayed S_k by a smoothed count near eps and flings it far
  // out, from where it shrinks back by a factor `decay` per step while unused. Restarts (or k-means
  // init, which sets S and N consistently) give such codes a real place in the data.
  const Tensor codes = div(table_->embed_avg,
                           smoothed_counts(table_->cluster_size, config_.ema_epsilon).unsqueeze(1));
  table_->weight.copy_(where(finite, codes, table_->weight));
}

int64_t VectorQuantizer::restart_codes(const std::vector<int64_t>& codes, const Tensor& h,
                                       Generator& gen) {
  if (codes.empty()) return 0;
  NoGradGuard no_grad;
  const int64_t n = static_cast<int64_t>(codes.size());
  const Tensor values = sample_rows(h, n, config_.restart_noise, gen);
  assign_rows(table_->weight, codes, values);
  // The restarted code's statistics say "seen `count` times, always at this vector", so its
  // mean S_k / N_k is exactly the new vector and it is not dead again at once.
  const double count = std::max(config_.dead_code_threshold, 1.0);
  assign_rows(table_->cluster_size, codes, full({n}, count, h.dtype(), h.device()));
  if (table_->embed_avg.defined()) assign_rows(table_->embed_avg, codes, mul(values, count));
  return n;
}

std::vector<int64_t> VectorQuantizer::dead_codes() const {
  const std::vector<double> counts = ema_counts();
  std::vector<int64_t> dead;
  for (int64_t k = 0; k < static_cast<int64_t>(counts.size()); ++k) {
    if (counts[k] < config_.dead_code_threshold) dead.push_back(k);
  }
  return dead;
}

void VectorQuantizer::cvq_reseed(const Tensor& h, const Tensor& d, const Tensor& finite) {
  NoGradGuard no_grad;
  const int64_t K = config_.n_embed;
  // The pull a_k = exp(-K * usage_k * cvq_rate) with usage_k = N_k / sum(N): K usage_k is 1 at
  // uniform use, so a busy code moves by exp(-cvq_rate) of the way and an unused one all the way.
  const Tensor total = clamp(sum(table_->cluster_size), 1e-12, 1e300);
  const Tensor pull =
      exp(div(mul(table_->cluster_size, -static_cast<double>(K) * config_.cvq_rate), total))
          .unsqueeze(1);
  // The batch vector nearest each code, by the distances this forward used (before the update).
  const Tensor anchors = index_select(h, 0, argmin(d, 0));
  const Tensor moved =
      where(finite, add(mul(table_->weight, rsub(1.0, pull)), mul(anchors, pull)), table_->weight);
  if (table_->embed_avg.defined()) {
    // Keep S_k / N~_k equal to the moved code.
    const Tensor s =
        mul(moved, smoothed_counts(table_->cluster_size, config_.ema_epsilon).unsqueeze(1));
    table_->embed_avg.copy_(where(finite, s, table_->embed_avg));
  }
  table_->weight.copy_(moved);
}

void VectorQuantizer::kmeans_init(const Tensor& h) {
  NoGradGuard no_grad;
  const int64_t K = config_.n_embed;
  // Start from K distinct random vectors (repeats, with noise, only when the batch has fewer).
  Generator gen = stream(RandomStream::KmeansInit);
  Tensor centres = sample_rows(h, K, 0.0, gen);
  if (config_.l2_normalize) centres = unit_rows(centres);
  Tensor counts;
  for (int64_t it = 0; it <= config_.kmeans_iterations; ++it) {
    const Tensor assignment = argmin(squared_distances(h, centres), 1);
    counts = bincount(assignment, K).to(h.dtype());
    if (it == config_.kmeans_iterations) break;  // the last pass only counts
    const Tensor sums = index_add(zeros_like(centres), 0, assignment, h);
    // An empty cluster keeps its centre. With unit vectors the mean is projected back onto the
    // sphere (spherical k-means): assignment is by cosine distance to unit centres.
    const Tensor filled = gt(counts, 0.0).to(h.dtype()).unsqueeze(1);
    Tensor means = div(sums, clamp(counts, 1.0, 1e30).unsqueeze(1));
    if (config_.l2_normalize) means = unit_rows(means);
    centres = add(mul(means, filled), mul(centres, rsub(1.0, filled)));
  }
  // The EMA statistics start as if the centres had been seen `count` times: S_k = e_k N_k. An
  // empty cluster counts as seen once at its centre; with N_k = 0 the first EMA update would
  // move it to the origin.
  counts = clamp(counts, 1.0, 1e30);
  table_->weight.copy_(centres);
  table_->cluster_size.copy_(counts);
  if (table_->embed_avg.defined()) table_->embed_avg.copy_(mul(centres, counts.unsqueeze(1)));
  // Every rank ran the same k-means on the same global batch, but a GPU's index_add sums in no
  // fixed order: rank 0's result goes to all, so the codebooks stay bit-identical.
  dist::Communicator& comm = dist::world();
  for (const Tensor& t : {table_->weight, table_->cluster_size, table_->embed_avg}) {
    if (t.defined()) comm.broadcast(t, 0);
  }
  initialized_.fill_(1);
}

Quantizer::Maintenance VectorQuantizer::end_epoch(int64_t epoch) {
  // The latest batch is non-finite only when no finite batch came after the first (forward()
  // keeps the last finite one): restarting codes on it would make them NaN.
  if (!last_inputs_.defined() || all_finite_gate(last_inputs_).item() == 0.0) return {};
  Generator gen = stream(RandomStream::EpochMaintenance);
  Maintenance m;
  std::vector<std::string> done;
  // Expansion is decided on the epoch's real counts, before resets revive codes (a restarted code
  // has a count of at least 1 and would look active).
  if (config_.expand) {
    const int64_t before = config_.n_embed;
    const std::string expanded = expand_codebook(gen);
    if (!expanded.empty()) done.push_back(expanded);
    m.codes_touched += config_.n_embed - before;
  }
  // Both resets are chosen on the epoch's counts and restarted in one draw, so no two codes get
  // the same batch vector, and a code both dead and among the least used is restarted once.
  std::set<int64_t> codes;
  if (config_.dead_code_reset == "epoch") {
    const std::vector<int64_t> dead = dead_codes();
    if (!dead.empty()) done.push_back(fmt::format("restarted {} dead codes", dead.size()));
    codes.insert(dead.begin(), dead.end());
  }
  if (config_.low_usage_reset_interval > 0 && (epoch + 1) % config_.low_usage_reset_interval == 0) {
    const std::vector<double> counts = ema_counts();
    std::vector<int64_t> order(counts.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return counts[a] < counts[b]; });
    order.resize(static_cast<size_t>(std::floor(config_.low_usage_reset_fraction * counts.size())));
    if (!order.empty()) done.push_back(fmt::format("reset the {} least-used codes", order.size()));
    codes.insert(order.begin(), order.end());
  }
  m.codes_touched += restart_codes({codes.begin(), codes.end()}, last_inputs_, gen);
  m.note = fmt::format("{}", fmt::join(done, "; "));
  return m;
}

void VectorQuantizer::set_maintenance_inputs(const Tensor& inputs) {
  VQ_CHECK(
      inputs.dim() == 2 && inputs.size(1) == lookup_dim_ && inputs.size(0) > 0,
      "VectorQuantizer: maintenance inputs must be [M, {}] vectors of the lookup space, got {}",
      lookup_dim_, shape_str(inputs.shape()));
  last_inputs_ = inputs.to(table_->weight.dtype()).to(table_->weight.device());
}

std::string VectorQuantizer::expand_codebook(Generator& gen) {
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
          mul(randn({extra, lookup_dim_}, gen, w.dtype(), w.device()), 0.01 * rms));
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
