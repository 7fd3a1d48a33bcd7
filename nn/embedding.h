// Embedding table [num_embeddings, dim], initialised N(0, 1) like PyTorch's, from the Generator
// the caller passes.
#pragma once

#include "autograd/generator.h"
#include "nn/module.h"

namespace vq::nn {

class Embedding : public Module {
 public:
  Embedding(Generator& gen, int64_t num_embeddings, int64_t embedding_dim);
  // indices int64 of any shape -> [..., dim]
  Tensor forward(const Tensor& indices) const;
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;
};

}  // namespace vq::nn
