// The quantizer interface shared by the vector quantizer (vector_quantizer.h) and finite scalar
// quantization (fsq.h), plus the configuration of both. Size letters: N batch, D code dimension,
// h w latent grid, M = N*h*w vectors, K codebook size.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "autograd/generator.h"
#include "models/codebook_stats.h"
#include "nn/module.h"

namespace vq::models {

// Limits on what a config may ask for (it can come from an untrusted file).
inline constexpr int64_t kMaxCodes = int64_t{1} << 24;
inline constexpr int64_t kMaxCodeDim = 1 << 16;

struct QuantizerConfig {
  std::string kind = "vq";       // "vq": a codebook of vectors; "fsq": finite scalar quantization
  int64_t n_embed = 64;          // K (the current size; codebook expansion grows it)
  std::string codebook = "ema";  // "ema": codes are running means of their vectors; "learned":
                                 // codes are parameters moved by the codebook loss; "simvq": a
                                 // frozen random codebook times one learned linear map
  int64_t codebook_dim = 0;      // > 0: look codes up in this many dims (learned projections in
                                 // and out); 0: in the embed_dim space itself
  bool l2_normalize = false;     // compare unit vectors (cosine distance) and use unit codes
  bool rotation_trick = false;   // rotation-trick gradient instead of the straight-through one
  double ema_decay = 0.7;
  double ema_epsilon = 1e-5;            // Laplace smoothing of the EMA counts
  double temperature = 2.5;             // training: sample codes from softmax(-d / T); 0 = argmin
  double beta = 10.0;                   // commitment loss weight
  double commitment_warmup_epochs = 5;  // beta ramps linearly from 0 over these epochs
  double entropy_weight = 2.0;          // weight of the entropy term (form: entropy_loss)
  double entropy_temperature = 1.0;     // soft assignment softmax(-d / this) for the entropy terms
  double confidence_weight = 0.0;       // weight x mean per-vector entropy (sharp assignments)
  double diversity_weight = 0.0;  // learned codebooks: mean squared cosine similarity of codes
  std::string entropy_loss =
      "seed";                    // "seed": log K - H(mean p); "lfq": mean H(p_i) - gamma H(mean p)
  double lfq_gamma = 1.0;        // the codebook-entropy factor of the "lfq" form
  std::string init = "uniform";  // "uniform" (+-1/K, the seed's), "normal", "kmeans" (first batch)
  int64_t kmeans_iterations = 10;
  double dead_code_threshold = 1.0;       // EMA count below which a code is dead
  std::string dead_code_reset = "epoch";  // "off", "epoch" (at the end of each epoch that another
                                          // follows) or "step" (every step)
  double restart_noise = 0.0;  // restarted codes get N(0, (this x rms of the vectors)^2) noise
  double cvq_rate = 0.0;       // > 0: CVQ re-seeding, code k moves toward its nearest batch
                               // vector by exp(-K * usage_k * this)
  int64_t low_usage_reset_interval = 1;   // epochs between low-usage resets; 0 = never
  double low_usage_reset_fraction = 0.3;  // share of least-used codes replaced then
  double active_threshold = 1.0;          // EMA count at or above which a code counts as "active"
  bool expand = false;                    // double K when the EMA says most codes are active
  int64_t expand_max_codes = 512;
  double expand_active_fraction = 0.9;
  std::vector<int64_t> fsq_levels{8, 5, 5, 5};  // kind "fsq": levels per dimension (K = product)

  void validate() const;
  // One line naming the settings in effect (for run headers), e.g. "K 64 x D 256, ema, ...".
  std::string describe(int64_t embed_dim) const;
};

struct QuantizerOutput {
  Tensor z_q;      // [N, D, h, w]: the codes, with the chosen gradient to z
  Tensor indices;  // int64 [N, h, w]
  Tensor loss;     // the quantizer's weighted loss terms, summed (scalar)
  // The unweighted terms as scalars on z's device; undefined where the quantizer has no such
  // term. They stay there: reading a value waits for the GPU, so a training step reads them all
  // at once, and only on steps that log (train::StepMetrics).
  Tensor commit_loss;     // mean((h - sg(code))^2), h: z in the lookup space
  Tensor codebook_loss;   // mean((sg(h) - code)^2), learned codebooks
  Tensor entropy_loss;    // entropy term ("seed" or "lfq" form)
  Tensor diversity_loss;  // learned codebooks with a diversity weight
  // What the statistics are made of: this batch's code counts (int64 [K]; the global batch in
  // training) and the EMA counts after its update (a copy, [K]).
  Tensor batch_counts, ema_counts;
  double active_threshold = 1.0, dead_threshold = 1.0;  // the config's, for stats()
  CodebookStats stats() const;                          // reads both counts from the device
};

class Quantizer : public nn::Module {
 public:
  virtual QuantizerOutput forward(const Tensor& z) = 0;  // z [N, D, h, w]
  virtual int64_t num_codes() const = 0;
  // Codes for token indices [N, h, w] -> [N, D, h, w] (decoding tokens without an encoder).
  virtual Tensor codes_for(const Tensor& indices) const = 0;
  // Code indices [N, h, w] without statistics or updates: the nearest codes (what evaluation
  // sees), or with temperature > 0 codes sampled as in training.
  virtual Tensor lookup(const Tensor& z, double temperature = 0.0) = 0;
  // Per-code EMA usage counts (for statistics and the analysis tool).
  virtual std::vector<double> ema_counts() const = 0;
  // What an epoch end's maintenance did: a line for the log (empty when nothing happened) and
  // how many codes it restarted, reset or added.
  struct Maintenance {
    std::string note;
    int64_t codes_touched = 0;
  };
  // Once per finished epoch that another epoch follows: periodic resets and codebook expansion,
  // preparing the next epoch (the trainer measures and saves the codebook before this).
  virtual Maintenance end_epoch(int64_t epoch) { return {}; }
  // The vectors end_epoch() restarts codes on (the latest training batch in lookup space; undefined
  // when there are none), so a checkpoint taken before a pending end_epoch() can resume it.
  virtual Tensor maintenance_inputs() const { return {}; }
  virtual void set_maintenance_inputs(const Tensor& inputs) {}
  // Scale in [0, 1] on the commitment weight (the trainer's warm-up).
  void set_commitment_scale(double scale) { commitment_scale_ = scale; }
  // The training step about to run: random draws of training (sampling, restarts) are keyed by
  // it, so a resumed run draws exactly what the uninterrupted one did.
  void set_step(int64_t step) { step_ = step; }
  // The stream lookup() samples from when given a temperature (the analysis tool seeds it).
  Generator& lookup_generator() { return lookup_gen_; }

 protected:
  explicit Quantizer(uint64_t seed) : seed_(seed), lookup_gen_(seed) {}
  // z [N, D, h, w] -> one row per latent pixel, [N*h*w, D]; `who` names the quantizer in the
  // error for a wrong shape.
  static Tensor flatten_latents(const Tensor& z, int64_t embed_dim, const char* who);
  // The random stream for `purpose` at the current step.
  Generator stream(RandomStream purpose) const { return stream_generator(seed_, purpose, step_); }
  double commitment_scale_ = 1.0;
  uint64_t seed_;
  int64_t step_ = 0;
  Generator lookup_gen_;
};

// Builds the quantizer a config asks for ("vq" or "fsq"): its random streams keyed by seed, its
// projections' initial weights drawn from `init`.
std::shared_ptr<Quantizer> make_quantizer(const QuantizerConfig& config, int64_t embed_dim,
                                          uint64_t seed, Generator& init);

}  // namespace vq::models
