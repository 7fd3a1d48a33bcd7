// The vector quantizer: each encoder vector z (one per latent pixel) is replaced by a code e_k
// from a codebook of K vectors, and the decoder sees only codes. This file is the place to learn
// how a VQ tokenizer's codebook lives or collapses.
//
//   nearest code:   k = argmin_j ||z - e_j||^2,  with ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2
//                   computed for all pairs by one GEMM.
//   training:       with temperature T > 0, k is sampled from softmax(-d / T) (Gumbel-max);
//                   evaluation always takes the argmin.
//   gradient:       straight-through: z_q = z + sg(e_k - z), so d(loss)/dz = d(loss)/dz_q.
//   losses:         commitment  beta * mean((z - sg(e_k))^2)          pulls z to its code
//                   codebook    mean((sg(z) - e_k)^2)      (learned)  pulls codes to their z
//                   entropy     w * (log K - H(mean_i p_i)), p_i = softmax(-d_i / T_e)
//                               spreads the batch over codes; gradient flows to z
//                   confidence  w_c * mean_i H(p_i)                    sharp assignments
//                   diversity   w_d * mean_{j != k} cos(e_j, e_k)^2  (learned)  pushes codes apart
//   EMA codebook:   N_k <- decay N_k + (1 - decay) n_k          (n_k: batch count of code k)
//                   S_k <- decay S_k + (1 - decay) sum_{i: k_i = k} z_i
//                   e_k  = S_k / N~_k, with Laplace smoothing N~_k = (N_k + eps) / (N + K eps) N
//   dead codes:     codes whose N_k fell below a threshold are restarted on random current
//                   encoder vectors, with N_k = threshold and S_k = threshold * e_k so the
//                   code's mean is exactly the new vector.
//   low-usage reset: every few epochs the least used share of codes is restarted the same way.
//   expansion:      (the seed's original behaviour) K doubles when the EMA counts call most
//                   codes active; new codes are perturbed copies of the most used ones.
//
// Parameter names follow taming's EMAVectorQuantizer: embedding.weight, embedding.cluster_size
// (N_k), embedding.embed_avg (S_k); a learned codebook (taming's VectorQuantizer2) has
// embedding.weight and keeps embedding.cluster_size as its usage monitor. The buffer
// `initialized` records that k-means has run, so a resumed run does not run it again.
#pragma once

#include <memory>

#include "autograd/generator.h"
#include "models/quantizer.h"

namespace vq::models {

// Holds the codebook tensors under taming's names.
class CodebookTable : public nn::Module {
 public:
  CodebookTable(int64_t K, int64_t D, bool learned);
  Tensor weight, cluster_size, embed_avg;  // [K, D] (parameter when learned), [K], [K, D]
};

class VectorQuantizer : public Quantizer {
 public:
  VectorQuantizer(const QuantizerConfig& config, int64_t embed_dim, uint64_t seed);

  QuantizerOutput forward(const Tensor& z) override;
  int64_t num_codes() const override { return config_.n_embed; }
  Tensor codes_for(const Tensor& indices) const override;
  Tensor lookup(const Tensor& z, double temperature = 0.0) override;
  std::vector<double> ema_counts() const override;
  std::string end_epoch(int64_t epoch) override;

  const QuantizerConfig& config() const { return config_; }
  const CodebookTable& table() const { return *table_; }
  bool initialized() const;

  // ---- the steps of forward, public so tests can check each on crafted inputs ----
  // Squared distances [M, K] from flattened vectors [M, D] to every code.
  Tensor distances(const Tensor& z_flat) const;
  // Code per row: argmin (T = 0 or evaluation) or a Gumbel-max sample from softmax(-d / T).
  Tensor choose_codes(const Tensor& d, double temperature);
  // The EMA update of N, S and the codes from one batch (no gradient).
  void ema_update(const Tensor& z_flat, const Tensor& indices);
  // Restarts `codes` on rows of z_flat chosen at random; returns how many were restarted.
  int64_t restart_codes(const std::vector<int64_t>& codes, const Tensor& z_flat);
  // Runs k-means on z_flat and makes the centres the codebook (counts carried into N and S).
  void kmeans_init(const Tensor& z_flat);

 private:
  int64_t restart_dead_codes(const Tensor& z_flat);
  std::string expand_codebook();

  QuantizerConfig config_;
  int64_t embed_dim_;
  std::shared_ptr<CodebookTable> table_;
  Tensor initialized_;  // buffer: 1 once the codebook was initialised from data (k-means)
  Tensor last_inputs_;  // the latest training batch's vectors [M, D], for epoch-end restarts
};

}  // namespace vq::models
