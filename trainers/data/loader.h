// Batches from a Dataset, decoded and preprocessed by background threads into a bounded queue of
// ready batches, in a fixed order: the shuffle (per pass, from the run's seed) and the random
// horizontal flips come from counter-based random numbers, so the batches are the same for any
// number of loader threads.
//
// An image that cannot be read is reported once (path and reason), skipped, and counted; a batch
// is filled with the next images instead. If nothing at all can be read, next() throws.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "autograd/tensor.h"
#include "trainers/data/dataset.h"

namespace vq::train {

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = true;
  bool flip = false;         // random horizontal flips (training)
  bool random_crop = false;  // random crop positions (training; folders of non-square images)
  bool repeat = true;        // endless passes (training); false: one pass, then end (evaluation)
  bool drop_last = true;     // drop a final partial batch (training)
  int64_t limit = 0;         // use only the first `limit` images (0: all)
  uint64_t seed = 0;
  int64_t threads = 1;
  int64_t prefetch = 4;    // batches decoded ahead
  bool report_bad = true;  // print skipped images to stderr
  // Data parallelism: this process takes share `shard` of `shards` equal, consecutive parts of
  // every batch (rank r of N: positions [r B/N, (r+1) B/N)), so the images seen, their order and
  // flips do not depend on N.
  int64_t shard = 0, shards = 1;
  // One ordered pass over (the first `limit` of) the images, keeping a final partial batch:
  // what evaluation and encoding use.
  static LoaderOptions single_pass(int64_t batch_size, int64_t limit = 0) {
    LoaderOptions o;
    o.batch_size = batch_size;
    o.shuffle = false;
    o.repeat = false;
    o.drop_last = false;
    o.limit = limit;
    return o;
  }
};

struct Batch {
  Tensor images;                 // [B, C, H, W] float32 in [-1, 1]
  std::vector<int64_t> indices;  // dataset indices
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<Dataset> dataset, int64_t channels, int64_t size,
             const LoaderOptions& options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next batch, or nullopt at the end of a non-repeating pass.
  std::optional<Batch> next();
  // Resumes the stream at batch `n` (a resumed run continues where it stopped).
  void skip_to(int64_t n);
  int64_t batches_per_pass() const;
  int64_t bad_images() const;
  const Dataset& dataset() const { return *dataset_; }

 private:
  void worker();
  std::vector<int64_t> order_of_pass(int64_t pass) const;
  // Fills batch `n`; returns nullopt past the end.
  std::optional<Batch> build(int64_t n);

  std::shared_ptr<Dataset> dataset_;
  int64_t channels_, size_, count_;
  LoaderOptions options_;

  std::mutex mutex_;
  std::condition_variable ready_cv_, space_cv_;
  std::map<int64_t, std::optional<Batch>> ready_;
  std::optional<std::string> failure_;
  int64_t next_to_build_ = 0, next_to_take_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;

  // Images found unreadable (shared across passes: a bad file is skipped every time).
  mutable std::mutex bad_mutex_;
  std::vector<bool> bad_;
  int64_t bad_count_ = 0;
  // Pass permutations are cached (one per pass) so workers do not recompute them.
  mutable std::mutex order_mutex_;
  mutable std::map<int64_t, std::vector<int64_t>> orders_;
};

}  // namespace vq::train
