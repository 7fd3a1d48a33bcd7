// The vector quantizer; see vector_quantizer.h for the math of every step.
#include "models/vector_quantizer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/init.h"

namespace vq::models {

namespace {

// ||a_i - b_j||^2 for rows a [M, D] and b [K, D], via ||a||^2 - 2 a.b + ||b||^2 (one GEMM).
Tensor squared_distances(const Tensor& a, const Tensor& b) {
  const Tensor a2 = sum(mul(a, a), {1}, true);          // [M, 1]
  const Tensor b2 = sum(mul(b, b), {1}).unsqueeze(0);   // [1, K]
  return add(sub(a2, mul(matmul(a, b.t()), 2.0)), b2);  // [M, K]
}

// Row r of `table` becomes row r of `values` for each listed row; the others stay (no graph).
void assign_rows(const Tensor& table, const std::vector<int64_t>& rows, const Tensor& values) {
  std::vector<float> keep(table.size(0), 1.0f);
  for (int64_t r : rows) keep[r] = 0.0f;
  Shape keep_shape(table.dim(), 1);
  keep_shape[0] = table.size(0);
  const Tensor keep_mask = from_vector(keep, keep_shape, table.device()).to(table.dtype());
  const Tensor index = from_vector(rows, {static_cast<int64_t>(rows.size())}, table.device());
  table.copy_(add(mul(table, keep_mask), index_add(zeros_like(table), 0, index, values)));
}

}  // namespace

CodebookTable::CodebookTable(int64_t K, int64_t D, bool learned) {
  weight = learned ? register_parameter("weight", zeros({K, D}))
                   : register_buffer("weight", zeros({K, D}));
  // A learned codebook keeps N_k too: it drives the statistics and dead-code restarts.
  cluster_size = register_buffer("cluster_size", zeros({K}));
  if (!learned) embed_avg = register_buffer("embed_avg", zeros({K, D}));
}

VectorQuantizer::VectorQuantizer(const QuantizerConfig& config, int64_t embed_dim, uint64_t seed)
    : Quantizer(seed), config_(config), embed_dim_(embed_dim) {
  config_.validate();
  const int64_t K = config_.n_embed, D = embed_dim;
  table_ = register_module("embedding",
                           std::make_shared<CodebookTable>(K, D, config_.codebook == "learned"));
  initialized_ = register_buffer("initialized", zeros({}, DType::UInt8));
  if (config_.init == "normal") {
    nn::init::normal_(table_->weight, 0.0, 1.0, gen_);
  } else {  // "uniform", and the placeholder until k-means sees data
    nn::init::uniform_(table_->weight, -1.0 / K, 1.0 / K, gen_);
  }
  NoGradGuard no_grad;
  if (table_->embed_avg.defined())
    table_->embed_avg.copy_(table_->weight);  // as taming's EmbeddingEMA
}

bool VectorQuantizer::initialized() const {
  return initialized_.item() != 0.0 || config_.init != "kmeans";
}

Tensor VectorQuantizer::distances(const Tensor& z_flat) const {
  return squared_distances(z_flat, table_->weight);
}

Tensor VectorQuantizer::choose_codes(const Tensor& d, double temperature) {
  NoGradGuard no_grad;
  if (temperature <= 0.0) return argmin(d, 1);
  // Gumbel-max: argmax(-d/T + g) with g = -log(-log(u)) is a sample from softmax(-d/T).
  const Tensor u = clamp(rand(d.shape(), gen_, d.dtype(), d.device()), 1e-20, 1.0);
  const Tensor gumbel = neg(log(neg(log(u))));
  return argmin(sub(mul(d, 1.0 / temperature), gumbel), 1);
}

void VectorQuantizer::ema_update(const Tensor& z_flat, const Tensor& indices) {
  NoGradGuard no_grad;
  const int64_t K = config_.n_embed;
  const double decay = config_.ema_decay;
  const Tensor counts = bincount(indices, K).to(z_flat.dtype());  // n_k
  table_->cluster_size.mul_(decay).add_(counts, 1.0 - decay);     // N_k
  if (config_.codebook == "learned") return;                      // monitor only
  const Tensor sums =
      index_add(zeros({K, embed_dim_}, z_flat.dtype(), z_flat.device()), 0, indices, z_flat);
  table_->embed_avg.mul_(decay).add_(sums, 1.0 - decay);  // S_k
  // Laplace smoothing keeps unused codes' counts positive: N~_k = (N_k + eps) / (N + K eps) N.
  // NOTE: a never-used code's S_k decays towards 0 while N~_k ~ eps, so its e_k can grow large and
  // the code drifts out of reach (taming's behaviour; dead-code restarts are the cure).
  const double n = sum(table_->cluster_size).item();
  const Tensor smoothed =
      mul(div(add(table_->cluster_size, config_.ema_epsilon), n + K * config_.ema_epsilon), n);
  table_->weight.copy_(div(table_->embed_avg, smoothed.unsqueeze(1)));
}

int64_t VectorQuantizer::restart_codes(const std::vector<int64_t>& codes, const Tensor& z_flat) {
  if (codes.empty()) return 0;
  NoGradGuard no_grad;
  const int64_t M = z_flat.size(0);
  std::vector<int64_t> rows;
  for (size_t i = 0; i < codes.size(); ++i) rows.push_back(gen_.next_below(M));
  const Tensor values = index_select(
      z_flat, 0, from_vector(rows, {static_cast<int64_t>(rows.size())}, z_flat.device()));
  assign_rows(table_->weight, codes, values);
  // The restarted code's statistics say "seen `count` times, always at this vector", so its
  // mean S_k / N_k is exactly the new vector and it is not dead again at once.
  const double count = std::max(config_.dead_code_threshold, 1.0);
  assign_rows(table_->cluster_size, codes,
              full({static_cast<int64_t>(codes.size())}, count, z_flat.dtype(), z_flat.device()));
  if (table_->embed_avg.defined()) assign_rows(table_->embed_avg, codes, mul(values, count));
  return static_cast<int64_t>(codes.size());
}

int64_t VectorQuantizer::restart_dead_codes(const Tensor& z_flat) {
  const std::vector<double> counts = ema_counts();
  std::vector<int64_t> dead;
  for (int64_t k = 0; k < static_cast<int64_t>(counts.size()); ++k) {
    if (counts[k] < config_.dead_code_threshold) dead.push_back(k);
  }
  return restart_codes(dead, z_flat);
}

void VectorQuantizer::kmeans_init(const Tensor& z_flat) {
  NoGradGuard no_grad;
  const int64_t M = z_flat.size(0), K = config_.n_embed;
  // Start from K distinct random vectors (with repeats only when the batch has fewer than K).
  Tensor start = M >= K ? randperm(M, gen_, z_flat.device()).narrow(0, 0, K)
                        : randint(0, M, {K}, gen_, z_flat.device());
  Tensor centres = index_select(z_flat, 0, start);
  Tensor counts;
  for (int64_t it = 0; it <= config_.kmeans_iterations; ++it) {
    const Tensor assignment = argmin(squared_distances(z_flat, centres), 1);
    counts = bincount(assignment, K).to(z_flat.dtype());
    if (it == config_.kmeans_iterations) break;  // the last pass only counts
    const Tensor sums = index_add(zeros_like(centres), 0, assignment, z_flat);
    // An empty cluster keeps its centre.
    const Tensor filled = gt(counts, 0.0).to(z_flat.dtype()).unsqueeze(1);
    centres = add(mul(div(sums, clamp(counts, 1.0, 1e30).unsqueeze(1)), filled),
                  mul(centres, rsub(1.0, filled)));
  }
  table_->weight.copy_(centres);
  if (table_->embed_avg.defined()) {
    // The EMA statistics start as if the centres had been seen `count` times: S_k = e_k N_k.
    table_->cluster_size.copy_(counts);
    table_->embed_avg.copy_(mul(centres, counts.unsqueeze(1)));
  }
  initialized_.fill_(1);
}

QuantizerOutput VectorQuantizer::forward(const Tensor& z) {
  VQ_CHECK(z.dim() == 4 && z.size(1) == embed_dim_,
           "VectorQuantizer: expected [N, {}, h, w], got {}", embed_dim_, shape_str(z.shape()));
  const int64_t N = z.size(0), h = z.size(2), w = z.size(3), K = config_.n_embed;
  const bool training = is_training();
  const Tensor z_flat = z.permute({0, 2, 3, 1}).reshape({N * h * w, embed_dim_});  // [M, D]
  if (training && !initialized()) kmeans_init(z_flat.detach());

  // Training updates the codebook in place after this forward (EMA, restarts), while backward
  // still needs the codes it saw: work on a snapshot (a differentiable copy for learned codes).
  const Tensor codebook = training ? table_->weight.clone() : table_->weight;
  // Distances carry a graph only when a soft-assignment term needs their gradient.
  const bool soft_terms = training && (config_.entropy_weight > 0 || config_.confidence_weight > 0);
  const Tensor d = squared_distances(soft_terms ? z_flat : z_flat.detach(), codebook);
  const Tensor indices = choose_codes(d.detach(), training ? config_.temperature : 0.0);
  const Tensor codes = embedding(codebook, indices);  // [M, D]

  QuantizerOutput out;
  const Tensor commit = mse_loss(z_flat, codes.detach());
  Tensor loss = mul(commit, config_.beta * commitment_scale_);
  out.commit_loss = commit.item();
  if (config_.codebook == "learned") {
    const Tensor pull = mse_loss(z_flat.detach(), codes);
    loss = add(loss, pull);
    out.codebook_loss = pull.item();
    if (config_.diversity_weight > 0) {
      const Tensor& e = codebook;
      const Tensor unit = div(e, sqrt(add(sum(mul(e, e), {1}, true), 1e-12)));
      const Tensor gram = matmul(unit, unit.t());
      // off-diagonal mean of cos^2 (the diagonal of unit vectors is exactly 1)
      const Tensor diversity =
          mul(sub(sum(mul(gram, gram)), static_cast<double>(K)), 1.0 / (K * (K - 1.0)));
      loss = add(loss, mul(diversity, config_.diversity_weight));
      out.diversity_loss = diversity.item();
    }
  }
  if (soft_terms) {
    const Tensor logits = mul(d, -1.0 / config_.entropy_temperature);
    const Tensor p = softmax(logits, 1);
    const Tensor avg = mean(p, {0});
    const Tensor h_avg = neg(sum(mul(avg, log(clamp(avg, 1e-12, 1.0)))));
    const Tensor entropy = rsub(std::log(static_cast<double>(K)), h_avg);
    loss = add(loss, mul(entropy, config_.entropy_weight));
    out.entropy_loss = entropy.item();
    if (config_.confidence_weight > 0) {
      const Tensor per_vector = neg(sum(mul(p, log_softmax(logits, 1)), {1}));
      loss = add(loss, mul(mean(per_vector), config_.confidence_weight));
    }
  }

  // Straight-through: the value of the codes, the gradient of z.
  const Tensor z_q_flat = add(z_flat, sub(codes, z_flat).detach());
  out.z_q = z_q_flat.view({N, h, w, embed_dim_}).permute({0, 3, 1, 2});
  out.indices = indices.view({N, h, w});
  out.loss = loss;

  const std::vector<int64_t> batch_counts = bincount(indices, K).to_vector<int64_t>();
  // A batch with non-finite vectors (a diverging step the trainer will skip) must not poison the
  // codebook statistics.
  const bool finite = std::isfinite(sum(z_flat.detach()).item());
  if (training && finite) {
    const Tensor inputs = z_flat.detach();
    ema_update(inputs, indices);
    if (config_.dead_code_reset == "step") restart_dead_codes(inputs);
    last_inputs_ = inputs;
  }
  out.stats = codebook_stats(batch_counts, ema_counts(), config_.active_threshold,
                             config_.dead_code_threshold);
  return out;
}

Tensor VectorQuantizer::lookup(const Tensor& z, double temperature) {
  NoGradGuard no_grad;
  VQ_CHECK(z.dim() == 4 && z.size(1) == embed_dim_,
           "VectorQuantizer: expected [N, {}, h, w], got {}", embed_dim_, shape_str(z.shape()));
  const int64_t N = z.size(0), h = z.size(2), w = z.size(3);
  const Tensor d = distances(z.permute({0, 2, 3, 1}).reshape({N * h * w, embed_dim_}));
  return choose_codes(d, temperature).view({N, h, w});
}

Tensor VectorQuantizer::codes_for(const Tensor& indices) const {
  VQ_CHECK(indices.dim() == 3, "VectorQuantizer::codes_for: expected indices [N, h, w], got {}",
           shape_str(indices.shape()));
  return embedding(table_->weight, indices).permute({0, 3, 1, 2}).contiguous();
}

std::vector<double> VectorQuantizer::ema_counts() const {
  return table_->cluster_size.to_vector<double>();
}

std::string VectorQuantizer::end_epoch(int64_t epoch) {
  if (!last_inputs_.defined()) return {};
  std::vector<std::string> done;
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
  if (config_.expand) {
    const std::string expanded = expand_codebook();
    if (!expanded.empty()) done.push_back(expanded);
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
  const Tensor parents = from_vector(order, {extra}, table_->weight.device());
  const Tensor& w = table_->weight;
  const double rms = std::sqrt(mean(mul(w, w)).item());
  const Tensor children =
      add(index_select(w, 0, parents),
          mul(randn({extra, embed_dim_}, gen_, w.dtype(), w.device()), 0.01 * rms));
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

void QuantizerConfig::validate() const {
  VQ_CHECK(n_embed >= 2, "quantizer: n_embed must be >= 2, got {}", n_embed);
  VQ_CHECK(codebook == "ema" || codebook == "learned",
           "quantizer: codebook must be 'ema' or 'learned', got '{}'", codebook);
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
  VQ_CHECK(init == "uniform" || init == "normal" || init == "kmeans",
           "quantizer: init must be uniform, normal or kmeans, got '{}'", init);
  VQ_CHECK(dead_code_reset == "off" || dead_code_reset == "epoch" || dead_code_reset == "step",
           "quantizer: dead_code_reset must be off, epoch or step, got '{}'", dead_code_reset);
  VQ_CHECK(low_usage_reset_fraction >= 0.0 && low_usage_reset_fraction <= 1.0,
           "quantizer: low_usage_reset_fraction must be in [0, 1], got {}",
           low_usage_reset_fraction);
  VQ_CHECK(!expand || codebook == "ema", "quantizer: codebook expansion needs the EMA codebook");
  VQ_CHECK(!expand || expand_max_codes >= n_embed,
           "quantizer: expand_max_codes {} is below n_embed {}", expand_max_codes, n_embed);
  VQ_CHECK(diversity_weight == 0.0 || codebook == "learned",
           "quantizer: the diversity loss applies to learned codebooks (the EMA codebook gets no "
           "gradient)");
}

}  // namespace vq::models
