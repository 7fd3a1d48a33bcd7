// A seeded random generator: (seed, offset) into the Philox stream. Every random op reserves the
// counters it uses and advances the offset, so a run is bit-reproducible for a given seed.
// A training run derives one stream per purpose and step from its seed (stream_generator), so
// draws never depend on what ran before them: a resumed run, or later a data-parallel one that
// starts a rank's rows at their global position, reproduces them exactly.
#pragma once

#include <cstdint>

namespace vq {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}

  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves `counters` Philox counters; returns the first.
  uint64_t reserve(uint64_t counters) {
    const uint64_t first = offset_;
    offset_ += counters;
    return first;
  }
  // Host-side draws for sequential decisions (shuffles, picks).
  uint32_t next_u32();
  double next_double();           // [0, 1)
  int64_t next_below(int64_t n);  // uniform integer in [0, n)

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// What a random stream is for. Each purpose has its own Philox key, so adding draws for one never
// shifts or repeats another's (weight init and the first step's code sampling once shared a key).
enum class RandomStream : uint64_t {
  ModelInit = 1,      // the VQModel's initial weights (encoder, decoder, convs, projections)
  DiscriminatorInit,  // PatchGAN weights
  CodebookInit,       // the initial codebook table
  CodeSampling,       // Gumbel noise of temperature sampling, per training step
  StepRestarts,       // dead-code restarts inside a training step
  EpochMaintenance,   // epoch-end restarts, low-usage resets and expansion
  KmeansInit,         // k-means initial centres
  DataOrder,          // the shuffle of each pass over the data, per pass
  DataFlips,          // random horizontal flips
  DataCrops,          // random crop positions
};

// The Philox key of `purpose` in a run seeded with `seed` (a 64-bit mix of the two).
uint64_t stream_key(uint64_t seed, RandomStream purpose);
// A generator for `purpose` at `step`: counters start at step * 2^40, far more than one step draws,
// so step s's numbers are the same whatever ran before it.
Generator stream_generator(uint64_t seed, RandomStream purpose, uint64_t step = 0);

// The process-wide generator used where none is passed (dropout masks). Layers that create
// parameters never use it: they take the Generator they draw from.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace vq
