// A stand-in for pytorch-fid's Inception weights: every tensor models::FidInception needs, with
// He-scaled random convolutions and identity batch norms (activations stay of order one).
#pragma once

#include <cmath>
#include <string>

#include "models/fid_inception.h"
#include "nn/safetensors.h"
#include "test_util.h"

namespace vq::test {

// What `skip` names is left out, what `reshape` names gets `shape` instead.
inline nn::NamedTensors random_fid_weights(const std::string& skip = "",
                                           const std::string& reshape = "",
                                           const Shape& shape = {}) {
  nn::NamedTensors out;
  uint64_t seed = 1;
  for (const auto& [name, s] : models::FidInception::weight_shapes()) {
    if (name == skip) continue;
    const Shape use = name == reshape ? shape : s;
    Tensor t;
    if (name.ends_with("conv.weight")) {
      t = mul(randn32(use, ++seed), std::sqrt(2.0 / static_cast<double>(s[1] * s[2] * s[3])));
    } else {
      t = name.ends_with("bn.weight") || name.ends_with("running_var") ? ones(use) : zeros(use);
    }
    out.emplace_back(name, t);
  }
  return out;
}

// Saves weights with the metadata scripts/convert_fid_inception.py writes.
inline void save_fid_weights(const std::string& path, const nn::NamedTensors& weights) {
  nn::save_safetensors(path, weights, {{"vqgan.network", "fid-inception-v3"}});
}

// random_fid_weights() saved once per process at `path`, which it returns.
inline const std::string& random_fid_weights_file(const std::string& path) {
  static const std::string saved = [&path] {
    save_fid_weights(path, random_fid_weights());
    return path;
  }();
  return saved;
}

}  // namespace vq::test
