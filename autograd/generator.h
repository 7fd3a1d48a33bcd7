// A seeded random generator: (seed, offset) into the Philox stream. Every random op reserves the
// counters it uses and advances the offset, so a run is bit-reproducible for a given seed, and a
// checkpoint that stores (seed, offset) resumes the exact stream.
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

// The process-wide generator used where none is passed (module initialisation, dropout).
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace vq
