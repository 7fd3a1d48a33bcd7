#include "nn/embedding.h"

#include "autograd/ops.h"
#include "nn/init.h"

namespace vq::nn {

Embedding::Embedding(Generator& gen, int64_t num_embeddings, int64_t embedding_dim) {
  VQ_CHECK(num_embeddings > 0 && embedding_dim > 0,
           "Embedding: sizes must be positive (got {} x {})", num_embeddings, embedding_dim);
  weight_ = register_parameter("weight", Tensor::empty({num_embeddings, embedding_dim}));
  init::normal_(weight_, 0.0, 1.0, gen);
}

Tensor Embedding::forward(const Tensor& indices) const { return embedding(weight_, indices); }

}  // namespace vq::nn
