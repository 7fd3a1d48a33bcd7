// The vector quantizer: each encoder vector z (one per latent pixel) is replaced by a code e_k
// from a codebook of K vectors, and the decoder sees only codes. This file is the place to learn
// how a VQ tokenizer's codebook lives or collapses. Size letters: M vectors, D their size, d the
// lookup size, K codes.
//
//   lookup space:   h = z, or h = W_in z in d << D dims (ViT-VQGAN's factorised codes), and with
//                   l2_normalize h and the codes are unit vectors (cosine distance); the code
//                   found goes back up through W_out before the decoder.
//   nearest code:   k = argmin_j ||h - e_j||^2,  with ||h - e||^2 = ||h||^2 - 2 h.e + ||e||^2
//                   computed for all pairs by one GEMM.
//   training:       with temperature T > 0, k is sampled from softmax(-d / T) (Gumbel-max);
//                   evaluation takes the argmin (lookup() can sample, for the analysis tool).
//   gradient:       straight-through: h_q = h + sg(e_k - h), so d(loss)/dh = d(loss)/dh_q; or the
//                   rotation trick (Fifty et al. 2024): h_q = sg(l R) h, with R the rotation
//                   taking h/|h| to e/|e| and l = |e|/|h|, so h_q = e_k in value while the
//                   gradient is rotated and rescaled: d(loss)/dh = l R^T d(loss)/dh_q.
//   losses:         commitment  beta * c * mean((h - sg(e_k))^2)      pulls h to its code
//                               (c ramps 0 -> 1 over the commitment warm-up epochs)
//                   codebook    mean((sg(h) - e_k)^2)   (learned, simvq) pulls codes to their h
//                   entropy     "seed": w (log K - H(mean_i p_i)),  p_i = softmax(-d_i / T_e)
//                               "lfq":  w (mean_i H(p_i) - gamma H(mean_i p_i))
//                   confidence  w_c * mean_i H(p_i)                    sharp assignments
//                   diversity   w_d * mean_{j != k} cos(e_j, e_k)^2  (learned)  pushes codes apart
//   codebooks:      "ema"     N_k <- decay N_k + (1 - decay) n_k      (n_k: batch count of code k)
//                             S_k <- decay S_k + (1 - decay) sum_{i: k_i = k} h_i
//                             e_k  = S_k / N~_k,  Laplace-smoothed
//                             N~_k = N (N_k + eps) / (N + K eps),  N = sum_j N_j
//                   "learned" e_k are parameters moved by the codebook loss
//                   "simvq"   e = C W: a frozen random C [K, d] times one learned W [d, d], so
//                             every code moves with every gradient step (Zhu et al. 2024)
//   restarts:       codes whose N_k fell below a threshold are restarted on distinct random
//                   vectors of the latest batch (+ optional noise; a batch with fewer vectors
//                   than codes repeats some, with 1% noise), with N_k = c = max(threshold, 1) and
//                   S_k = c * e_k, so the code's mean is the new vector and it is not dead again
//                   at once; every step, or at the end of each epoch that another follows (the
//                   trainer measures and saves the codebook before that).
//   CVQ re-seeding: every step code k moves toward the batch vector nearest to it by
//                   a_k = exp(-K * usage_k * rate): rarely used codes jump, busy ones barely move
//                   (Zheng & Vedaldi 2023); N and S are kept consistent.
//   low-usage reset: every `low_usage_reset_interval` epochs (the seed: every epoch; not after
//                   the last) the least used share of codes (the seed: 30%) is restarted,
//                   healthy or not, in one draw with that epoch's dead codes.
//   k-means init:   codes start at k-means centres of the first batch, with N_k = cluster size
//                   and S_k = centre * N_k; with l2_normalize the centres are unit vectors
//                   (spherical k-means).
//   expansion:      (the seed's original behaviour) K doubles when the EMA counts call most
//                   codes active; new codes are perturbed copies of the most used ones.
//
// Parameter names follow taming's EMAVectorQuantizer: embedding.weight, embedding.cluster_size
// (N_k), embedding.embed_avg (S_k); a learned codebook (taming's VectorQuantizer2) has
// embedding.weight and keeps embedding.cluster_size as its usage monitor; simvq adds
// embedding_proj.weight (W), and factorised codes in_proj / out_proj. The buffer `initialized`
// records that k-means has run, so a resumed run does not run it again.
#pragma once

#include <memory>

#include "models/quantizer.h"
#include "nn/linear.h"

namespace vq::models {

// The codebook tensors under taming's names.
class CodebookTable : public nn::Module {
 public:
  // `kind` as QuantizerConfig::codebook: "learned" makes weight a parameter, "ema" adds embed_avg.
  CodebookTable(int64_t K, int64_t d, const std::string& kind);
  Tensor weight, cluster_size, embed_avg;  // [K, d] (a parameter when learned), [K], [K, d] (EMA)
};

class VectorQuantizer : public Quantizer {
 public:
  // seed keys the quantizer's own random streams (codebook init, sampling, restarts); the optional
  // projections (codebook_dim, SimVQ) draw their initial weights from `init`.
  VectorQuantizer(const QuantizerConfig& config, int64_t embed_dim, uint64_t seed, Generator& init);

  QuantizerOutput forward(const Tensor& z) override;
  int64_t num_codes() const override { return config_.n_embed; }
  Tensor codes_for(const Tensor& indices) const override;
  Tensor lookup(const Tensor& z, double temperature = 0.0) override;
  std::vector<double> ema_counts() const override;
  Maintenance end_epoch(int64_t epoch) override;
  Tensor maintenance_inputs() const override { return last_inputs_; }
  void set_maintenance_inputs(const Tensor& inputs) override;

  const CodebookTable& table() const { return *table_; }
  bool initialized() const;

  // ---- the steps of forward, public so tests can check each on crafted inputs ----
  // Flattened z [M, D] into the lookup space [M, d] (projection, normalisation).
  Tensor to_lookup_space(const Tensor& z_flat) const;
  // The codes as used for lookup [K, d] (simvq's product, unit rows with l2_normalize), made from
  // the stored table or from a snapshot of it.
  Tensor codebook() const { return codebook(table_->weight); }
  Tensor codebook(const Tensor& table) const;
  // Squared distances [M, K] from lookup-space vectors [M, d] to every code.
  Tensor distances(const Tensor& h) const;
  // Code per row: argmin (T = 0 or evaluation) or a Gumbel-max sample from softmax(-d / T)
  // with noise from `gen`, drawn for `all_rows` rows of which d holds those from `first_row` on
  // (this rank's share of the global batch).
  static Tensor choose_codes(const Tensor& d, double temperature, Generator& gen,
                             int64_t first_row = 0, int64_t all_rows = 0);
  // h_q with the value of `codes` and the straight-through or rotation-trick gradient to h.
  Tensor quantized_with_gradient(const Tensor& h, const Tensor& codes) const;
  // ---- codebook maintenance (codebook_maintenance.cpp), all without gradient ----
  // The EMA update of N and S (and the codes) from the batch h with its codes; where `finite`
  // (a uint8 scalar gate on the device) is 0 everything keeps its value.
  void ema_update(const Tensor& h, const Tensor& indices, const Tensor& finite);
  // n rows of h [M, d] chosen at random, distinct while M >= n; repeats get at least 1% noise,
  // every row `noise` x rms(h) (codes restarted on them, k-means starts).
  static Tensor sample_rows(const Tensor& h, int64_t n, double noise, Generator& gen);
  // Restarts `codes` on rows of h chosen by sample_rows; returns how many were restarted.
  int64_t restart_codes(const std::vector<int64_t>& codes, const Tensor& h, Generator& gen);
  // Codes whose EMA count is below the dead-code threshold.
  std::vector<int64_t> dead_codes() const;
  // CVQ: pulls each code toward its nearest row of h (distances d [M, K]), rarely used codes
  // the most; gated by `finite` like ema_update().
  void cvq_reseed(const Tensor& h, const Tensor& d, const Tensor& finite);
  // Runs k-means on h and makes the centres the codebook (counts carried into N and S).
  void kmeans_init(const Tensor& h);

 private:
  std::string expand_codebook(Generator& gen);

  QuantizerConfig config_;
  int64_t embed_dim_, lookup_dim_;
  std::shared_ptr<CodebookTable> table_;
  std::shared_ptr<nn::Linear> in_proj_, out_proj_, simvq_proj_;
  Tensor initialized_;  // buffer: 1 once the codebook was initialised from data (k-means)
  // initialized_'s value as last read, with the storage and version it was read from: forward()
  // asks every step, and a read is a wait for the GPU; a loaded checkpoint writes a new version.
  mutable struct {
    const void* storage = nullptr;
    uint64_t version = 0;
    bool value = false;
  } initialized_read_;
  // The latest finite training batch in lookup space [M, d], for epoch-end restarts.
  Tensor last_inputs_;
};

}  // namespace vq::models
