#include "models/fsq.h"

#include <cmath>

#include "autograd/autocast.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/dist/communicator.h"

namespace vq::models {

namespace {

// Holds the usage monitor under the vector quantizer's name, embedding.cluster_size.
class UsageTable : public nn::Module {
 public:
  explicit UsageTable(int64_t K) { cluster_size = register_buffer("cluster_size", zeros({K})); }
  Tensor cluster_size;
};

}  // namespace

FiniteScalarQuantizer::FiniteScalarQuantizer(const QuantizerConfig& config, int64_t embed_dim,
                                             uint64_t seed, Generator& init)
    : Quantizer(seed), config_(config), embed_dim_(embed_dim) {
  config_.validate();
  const auto& levels = config_.fsq_levels;
  const int64_t n = static_cast<int64_t>(levels.size());
  std::vector<float> half_range, offset, half_width;
  for (int64_t L : levels) {
    basis_.push_back(num_codes_);
    num_codes_ *= L;
    // w: the grid's half width (L - 1) / 2. a: w shrunk by 1e-3, so that |b| stays inside the
    // outermost rounding edge and rounding can never produce an extra level. o: an even L has
    // no level at 0; its levels sit at half-integers (L = 2: -1/2, +1/2), found by rounding b - o.
    const double w = (L - 1) / 2.0;
    half_range.push_back(static_cast<float>(w * (1.0 - 1e-3)));
    offset.push_back(L % 2 == 0 ? 0.5f : 0.0f);
    half_width.push_back(static_cast<float>(w));
  }
  // Indices are summed in the codes' float32 dtype, exact only up to 2^24.
  VQ_CHECK(num_codes_ <= (int64_t{1} << 24),
           "FSQ: {} codes are too many (levels multiply to more than 2^24)", num_codes_);
  half_range_ = from_vector(half_range, {n});
  offset_ = from_vector(offset, {n});
  half_width_ = from_vector(half_width, {n});
  project_in_ = register_module("project_in", std::make_shared<nn::Linear>(init, embed_dim, n));
  project_out_ = register_module("project_out", std::make_shared<nn::Linear>(init, n, embed_dim));
  usage_ = register_module("embedding", std::make_shared<UsageTable>(num_codes_))->cluster_size;
}

Tensor FiniteScalarQuantizer::quantize(const Tensor& h) const {
  // The per-dimension constants are plain tensors (not state to save): bring them to h.
  auto like_h = [&](const Tensor& c) { return c.to(h.dtype()).to(h.device()); };
  const Tensor bounded = mul(tanh(h), like_h(half_range_));
  // NOTE: for even L, h = 0 lies exactly on a rounding edge (b - o = -1/2); round() breaks the tie
  // the same way on every device.
  const Tensor grid = add(round(sub(bounded, like_h(offset_))), like_h(offset_));
  const Tensor rounded = add(bounded, sub(grid, bounded).detach());  // straight-through
  return div(rounded, like_h(half_width_));
}

Tensor FiniteScalarQuantizer::codes_to_indices(const Tensor& codes) const {
  NoGradGuard no_grad;
  const Tensor hw = half_width_.to(codes.dtype()).to(codes.device());
  const Tensor digits = round(add(mul(codes, hw), hw));  // in [0, L_i - 1]
  std::vector<double> basis(basis_.begin(), basis_.end());
  const Tensor b =
      from_vector(basis, {static_cast<int64_t>(basis.size())}, codes.device()).to(codes.dtype());
  return sum(mul(digits, b), {1}).to(DType::Int64);  // exact: whole numbers below 2^24
}

Tensor FiniteScalarQuantizer::indices_to_codes(const Tensor& indices) const {
  NoGradGuard no_grad;
  const auto idx = indices.to_vector<int64_t>();
  const int64_t n = static_cast<int64_t>(basis_.size());
  const auto hw = half_width_.to_vector<float>();
  std::vector<float> codes;
  codes.reserve(idx.size() * n);
  for (int64_t k : idx) {
    VQ_CHECK(k >= 0 && k < num_codes_, "FSQ: index {} is outside [0, {})", k, num_codes_);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t digit = (k / basis_[i]) % config_.fsq_levels[i];
      codes.push_back((static_cast<float>(digit) - hw[i]) / hw[i]);
    }
  }
  Shape shape = indices.shape();
  shape.push_back(n);
  return from_vector(codes, shape, indices.device());
}

QuantizerOutput FiniteScalarQuantizer::forward(const Tensor& z) {
  AutocastScope float32(DType::Float32);  // a float32 island under mixed precision (autocast.h)
  const Tensor z_flat = flatten_latents(z, embed_dim_, "FSQ");
  const int64_t N = z.size(0), height = z.size(2), width = z.size(3);
  const Tensor codes = quantize(project_in_->forward(z_flat));  // [M, n]
  const Tensor indices = codes_to_indices(codes.detach());
  QuantizerOutput out;
  out.z_q = project_out_->forward(codes).view({N, height, width, embed_dim_}).permute({0, 3, 1, 2});
  out.indices = indices.view({N, height, width});
  out.loss = zeros({}, z.dtype(), z.device());  // FSQ needs no commitment or codebook loss
  out.batch_counts = bincount(indices, num_codes_);
  // Data parallelism: usage over the global batch, so every rank keeps the same statistics.
  if (is_training()) {
    dist::world().all_reduce_sum(out.batch_counts);
    NoGradGuard no_grad;
    usage_.mul_(config_.ema_decay)
        .add_(out.batch_counts.to(usage_.dtype()), 1.0 - config_.ema_decay);
  }
  out.ema_counts = usage_.clone();
  out.active_threshold = config_.active_threshold;
  out.dead_threshold = config_.dead_code_threshold;
  return out;
}

Tensor FiniteScalarQuantizer::lookup(const Tensor& z, double temperature) {
  VQ_CHECK(temperature == 0.0,
           "FSQ assigns codes by rounding; a sampling temperature ({}) does not apply",
           temperature);
  NoGradGuard no_grad;
  const Tensor z_flat = flatten_latents(z, embed_dim_, "FSQ");
  return codes_to_indices(quantize(project_in_->forward(z_flat)))
      .view({z.size(0), z.size(2), z.size(3)});
}

Tensor FiniteScalarQuantizer::codes_for(const Tensor& indices) const {
  VQ_CHECK(indices.dim() == 3, "FSQ::codes_for: expected indices [N, h, w], got {}",
           shape_str(indices.shape()));
  return project_out_->forward(indices_to_codes(indices).to(project_out_->weight().dtype()))
      .permute({0, 3, 1, 2})
      .contiguous();
}

std::vector<double> FiniteScalarQuantizer::ema_counts() const { return usage_.to_vector<double>(); }

}  // namespace vq::models
