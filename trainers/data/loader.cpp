#include "trainers/data/loader.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "autograd/generator.h"
#include "autograd/philox.h"

namespace vq::train {

DataLoader::DataLoader(std::shared_ptr<Dataset> dataset, int64_t channels, int64_t size,
                       const LoaderOptions& options)
    : dataset_(std::move(dataset)), channels_(channels), size_(size), options_(options) {
  VQ_CHECK(options_.batch_size >= 1, "--batch_size must be at least 1, got {}",
           options_.batch_size);
  VQ_CHECK(options_.shards >= 1 && options_.shard >= 0 && options_.shard < options_.shards,
           "DataLoader: shard {} of {} does not exist", options_.shard, options_.shards);
  VQ_CHECK(options_.threads >= 1 && options_.prefetch >= 1,
           "data loader: threads and prefetch must be >= 1");
  count_ = options_.limit > 0 ? std::min(options_.limit, dataset_->size()) : dataset_->size();
  VQ_CHECK(count_ > 0, "data loader: {} holds no images", dataset_->describe());
  VQ_CHECK(!options_.drop_last || count_ >= options_.batch_size,
           "data loader: {} images are fewer than one batch of {} ({}); lower --batch_size", count_,
           options_.batch_size, dataset_->describe());
  bad_.assign(count_, false);
  for (int64_t t = 0; t < options_.threads; ++t) threads_.emplace_back([this] { worker(); });
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  space_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

int64_t DataLoader::batches_per_pass() const {
  return options_.drop_last ? count_ / options_.batch_size
                            : (count_ + options_.batch_size - 1) / options_.batch_size;
}

int64_t DataLoader::bad_images() const {
  std::lock_guard<std::mutex> lock(bad_mutex_);
  return bad_count_;
}

std::vector<int64_t> DataLoader::order_of_pass(int64_t pass) const {
  std::lock_guard<std::mutex> lock(order_mutex_);
  auto it = orders_.find(pass);
  if (it != orders_.end()) return it->second;
  std::vector<int64_t> order(count_);
  std::iota(order.begin(), order.end(), 0);
  if (options_.shuffle) {
    Generator gen = stream_generator(options_.seed, RandomStream::DataOrder, pass);
    for (int64_t i = count_ - 1; i > 0; --i) std::swap(order[i], order[gen.next_below(i + 1)]);
  }
  while (orders_.size() > 2) orders_.erase(orders_.begin());  // only the passes in flight
  return orders_.emplace(pass, std::move(order)).first->second;
}

std::optional<Batch> DataLoader::build(int64_t n) {
  const int64_t per_pass = batches_per_pass();
  if (!options_.repeat && n >= per_pass) return std::nullopt;
  const int64_t pass = n / per_pass, global_first = (n % per_pass) * options_.batch_size;
  const int64_t global_wanted = std::min(options_.batch_size, count_ - global_first);
  const int64_t first = global_first + global_wanted * options_.shard / options_.shards;
  const int64_t wanted =
      global_first + global_wanted * (options_.shard + 1) / options_.shards - first;
  const std::vector<int64_t> order = order_of_pass(pass);
  const int64_t image_numel = channels_ * size_ * size_;
  std::vector<float> pixels(static_cast<size_t>(wanted * image_numel));
  Batch batch;
  auto try_load = [&](int64_t position) {
    const int64_t index = order[position];
    {
      std::lock_guard<std::mutex> lock(bad_mutex_);
      if (bad_[index]) return false;
    }
    // Flips and crops come from (seed, pass, position), not from thread order.
    const uint64_t draw = pass * count_ + position;
    Augmentation augmentation;
    augmentation.flip =
        options_.flip &&
        philox_uniform_at(stream_key(options_.seed, RandomStream::DataFlips), 0, draw) < 0.5f;
    if (options_.random_crop) {
      const uint64_t crops = stream_key(options_.seed, RandomStream::DataCrops);
      augmentation.crop_x = philox_uniform_at(crops, 0, 2 * draw);
      augmentation.crop_y = philox_uniform_at(crops, 0, 2 * draw + 1);
    }
    try {
      dataset_->load(index, augmentation, &pixels[batch.indices.size() * image_numel]);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(bad_mutex_);
      if (!bad_[index]) {
        bad_[index] = true;
        ++bad_count_;
        if (options_.report_bad)
          std::fprintf(stderr, "warning: skipping unreadable image: %s\n", e.what());
      }
      return false;
    }
    batch.indices.push_back(index);
    return true;
  };
  for (int64_t k = 0; k < wanted; ++k) {
    if (try_load(first + k) || !options_.repeat) continue;
    // Training: stand in the next readable image of the pass so batches stay full.
    bool found = false;
    for (int64_t step = 1; step < count_ && !found; ++step)
      found = try_load((first + k + step) % count_);
    VQ_CHECK(found, "none of the {} images of {} could be read", count_, dataset_->describe());
  }
  if (batch.indices.empty()) {  // a whole evaluation batch was unreadable; next() moves past it
    VQ_CHECK(bad_images() < count_, "none of the {} images of {} could be read", count_,
             dataset_->describe());
    return batch;
  }
  const int64_t B = static_cast<int64_t>(batch.indices.size());
  batch.images = Tensor::empty({B, channels_, size_, size_});
  std::copy_n(pixels.data(), B * image_numel, batch.images.data<float>());
  return batch;
}

void DataLoader::worker() {
  while (true) {
    int64_t n;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      space_cv_.wait(
          lock, [&] { return stopping_ || next_to_build_ - next_to_take_ < options_.prefetch; });
      if (stopping_) return;
      n = next_to_build_++;
    }
    std::optional<Batch> batch;
    std::optional<std::string> error;
    try {
      batch = build(n);
    } catch (const std::exception& e) {
      error = e.what();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (error && !failure_) failure_ = error;
      if (!error && n >= next_to_take_) ready_[n] = std::move(batch);
    }
    ready_cv_.notify_all();
    if (error) return;
  }
}

std::optional<Batch> DataLoader::next() {
  while (true) {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_cv_.wait(lock, [&] { return failure_.has_value() || ready_.count(next_to_take_) > 0; });
    if (ready_.count(next_to_take_) == 0) throw Error(*failure_);
    auto it = ready_.find(next_to_take_);
    if (!it->second) return std::nullopt;  // the end of a single pass (kept for later calls)
    Batch batch = std::move(*it->second);
    ready_.erase(it);
    ++next_to_take_;
    lock.unlock();
    space_cv_.notify_all();
    if (!batch.indices.empty()) return batch;
  }
}

void DataLoader::skip_to(int64_t n) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    next_to_take_ = next_to_build_ = n;
    ready_.clear();
  }
  space_cv_.notify_all();
}

}  // namespace vq::train
