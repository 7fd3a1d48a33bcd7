// Finite scalar quantization (Mentzer et al. 2023), a drop-in quantizer without a learned
// codebook: z is projected to n = len(levels) dimensions, each squashed into a bounded range
// and rounded to one of L_i levels, so the implicit codebook is the grid of prod(L_i) points,
// every one reachable by construction. Size letters: M vectors, D embed_dim, n levels.
//
//   bound:     b_i = tanh(h_i) * a_i,  a_i = w_i (1 - 1e-3),  w_i = (L_i - 1) / 2
//   quantize:  q_i = round(b_i - o_i) + o_i with a straight-through gradient, o_i = 1/2 for even
//              L_i (else 0): L_i levels, symmetric about 0, spaced 1 apart; the code is q_i / w_i
//              in [-1, 1] (L = 2 gives -1, +1; L = 5 gives -1, -1/2, 0, 1/2, 1)
//   index:     k = sum_i (q_i + w_i) prod_{j < i} L_j   (mixed radix; and back)
//
// It reports the same codebook statistics as the vector quantizer; its "EMA counts" are an
// exponential average of per-code usage (embedding.cluster_size), kept for monitoring only.
#pragma once

#include <memory>

#include "models/quantizer.h"
#include "nn/linear.h"

namespace vq::models {

class FiniteScalarQuantizer : public Quantizer {
 public:
  // project_in / project_out draw their initial weights from `init`.
  FiniteScalarQuantizer(const QuantizerConfig& config, int64_t embed_dim, uint64_t seed,
                        Generator& init);

  QuantizerOutput forward(const Tensor& z) override;
  int64_t num_codes() const override { return num_codes_; }
  Tensor codes_for(const Tensor& indices) const override;
  Tensor lookup(const Tensor& z, double temperature = 0.0) override;
  std::vector<double> ema_counts() const override;

  // ---- the steps, public for tests ----
  Tensor quantize(const Tensor& h) const;                // [M, n] -> grid points in [-1, 1]^n
  Tensor codes_to_indices(const Tensor& codes) const;    // grid points [M, n] -> int64 [M]
  Tensor indices_to_codes(const Tensor& indices) const;  // int64 [...] -> [..., n]

 private:
  QuantizerConfig config_;
  int64_t embed_dim_, num_codes_ = 1;
  std::vector<int64_t> basis_;
  Tensor half_range_, offset_, half_width_;  // per-dimension constants a, o, w [n]
  std::shared_ptr<nn::Linear> project_in_, project_out_;
  Tensor usage_;  // EMA of per-code usage, the buffer embedding.cluster_size
};

}  // namespace vq::models
