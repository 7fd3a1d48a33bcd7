// Low-precision operand copies and the weight cache (low_precision_copy.h). Entries are keyed by
// the storage's address and the view (offset, shape, strides) with the target dtype and layout;
// an entry counts only while a weak pointer shows the same storage alive at the version copied,
// so a storage freed and another allocated at its address never hits.
#include "autograd/low_precision_copy.h"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "autograd/node.h"
#include "autograd/storage.h"
#include "autograd/switches.h"

namespace vq {

bool is_channels_last(const Tensor& t) {
  if (t.dim() != 4) return false;
  const int64_t C = t.size(1), H = t.size(2), W = t.size(3);
  return t.strides() == Shape{H * W * C, 1, W * C, C};
}

Tensor low_precision_copy(const Tensor& t, DType dtype, bool channels_last) {
  NoGradGuard no_grad;
  if (t.dtype() == dtype && (channels_last ? is_channels_last(t) : t.is_contiguous()))
    return t.detach();
  if (!channels_last) return t.detach().to(dtype);
  VQ_CHECK(t.dim() == 4, "low_precision_copy: channels-last needs 4 dims, got {}",
           shape_str(t.shape()));
  const Tensor memory =
      Tensor::empty({t.size(0), t.size(2), t.size(3), t.size(1)}, dtype, t.device());
  const Tensor view = memory.permute({0, 3, 1, 2});
  view.copy_(t.detach());
  return view;
}

namespace {

std::atomic<int64_t> copies_made{0};

struct Key {
  const Storage* storage;
  int64_t offset;
  Shape shape, strides;
  DType dtype;
  bool channels_last;
  auto tie() const { return std::tie(storage, offset, shape, strides, dtype, channels_last); }
  bool operator<(const Key& other) const { return tie() < other.tie(); }
};

struct Entry {
  std::weak_ptr<Storage> storage;
  uint64_t version;
  Tensor copy;
};

struct Cache {
  std::mutex mutex;
  std::map<Key, Entry> entries;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors must not outlive the backends at exit
  return *c;
}

bool cache_enabled() {
  static const bool on = env_switch("VQ_CAST_CACHE", true);
  return on;
}

}  // namespace

Tensor cached_low_precision_copy(const Tensor& weight, DType dtype, bool channels_last) {
  if (!cache_enabled() || !weight.is_leaf() || weight.dtype() == dtype) {
    if (weight.dtype() != dtype || channels_last) ++copies_made;
    return low_precision_copy(weight, dtype, channels_last);
  }
  const std::shared_ptr<Storage>& storage = weight.storage();
  const Key key{storage.get(),    weight.offset(), weight.shape(),
                weight.strides(), dtype,           channels_last};
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.entries.find(key);
  if (it != c.entries.end() && it->second.storage.lock() == storage &&
      it->second.version == storage->version()) {
    return it->second.copy;
  }
  // A new weight (not a new version of a cached one, the common miss after every optimizer
  // step): forget the entries of freed storages first, so the cache holds live weights only.
  if (it == c.entries.end()) {
    for (auto e = c.entries.begin(); e != c.entries.end();) {
      e = e->second.storage.expired() ? c.entries.erase(e) : std::next(e);
    }
  }
  ++copies_made;
  Entry entry{storage, storage->version(), low_precision_copy(weight, dtype, channels_last)};
  c.entries.insert_or_assign(key, entry);
  return entry.copy;
}

int64_t low_precision_copies_made() { return copies_made.load(); }

}  // namespace vq
