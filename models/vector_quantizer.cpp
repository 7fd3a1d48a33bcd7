// The vector quantizer's forward path: lookup space, distances, code choice, losses and the
// gradient to the encoder. See vector_quantizer.h for the math; codebook_maintenance.cpp holds
// the updates (EMA, restarts, CVQ, k-means, expansion).
#include "models/vector_quantizer.h"

#include <cmath>

#include "autograd/autocast.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "models/codebook_math.h"
#include "nn/dist/communicator.h"
#include "nn/init.h"

namespace vq::models {

CodebookTable::CodebookTable(int64_t K, int64_t d, const std::string& kind) {
  weight = kind == "learned" ? register_parameter("weight", zeros({K, d}))
                             : register_buffer("weight", zeros({K, d}));
  // Every codebook keeps N_k: it drives the statistics and the restarts.
  cluster_size = register_buffer("cluster_size", zeros({K}));
  if (kind == "ema") embed_avg = register_buffer("embed_avg", zeros({K, d}));
}

VectorQuantizer::VectorQuantizer(const QuantizerConfig& config, int64_t embed_dim, uint64_t seed,
                                 Generator& init)
    : Quantizer(seed), config_(config), embed_dim_(embed_dim) {
  config_.validate();
  const int64_t K = config_.n_embed;
  lookup_dim_ = config_.codebook_dim > 0 ? config_.codebook_dim : embed_dim;
  if (config_.codebook_dim > 0) {
    in_proj_ =
        register_module("in_proj", std::make_shared<nn::Linear>(init, embed_dim, lookup_dim_));
    out_proj_ =
        register_module("out_proj", std::make_shared<nn::Linear>(init, lookup_dim_, embed_dim));
  }
  table_ = register_module("embedding",
                           std::make_shared<CodebookTable>(K, lookup_dim_, config_.codebook));
  if (config_.codebook == "simvq") {
    simvq_proj_ = register_module(
        "embedding_proj", std::make_shared<nn::Linear>(init, lookup_dim_, lookup_dim_, false));
  }
  initialized_ = register_buffer("initialized", zeros({}, DType::UInt8));
  Generator gen = stream(RandomStream::CodebookInit);
  if (config_.codebook == "simvq") {
    // The frozen basis: random directions with unit expected length.
    nn::init::normal_(table_->weight, 0.0, 1.0 / std::sqrt(static_cast<double>(lookup_dim_)), gen);
  } else if (config_.init == "normal") {
    nn::init::normal_(table_->weight, 0.0, 1.0, gen);
  } else {  // "uniform" (the seed's), and the placeholder until k-means sees data
    nn::init::uniform_(table_->weight, -1.0 / K, 1.0 / K, gen);
  }
  NoGradGuard no_grad;
  if (table_->embed_avg.defined())
    table_->embed_avg.copy_(table_->weight);  // as taming's EmbeddingEMA
}

bool VectorQuantizer::initialized() const {
  if (config_.init != "kmeans") return true;
  auto& r = initialized_read_;
  const Storage* storage = initialized_.storage().get();
  if (r.storage != storage || r.version != storage->version()) {
    r = {storage, storage->version(), initialized_.item() != 0.0};
  }
  return r.value;
}

Tensor VectorQuantizer::to_lookup_space(const Tensor& z_flat) const {
  const Tensor h = in_proj_ ? in_proj_->forward(z_flat) : z_flat;
  return config_.l2_normalize ? unit_rows(h) : h;
}

Tensor VectorQuantizer::codebook(const Tensor& table) const {
  const Tensor e = simvq_proj_ ? simvq_proj_->forward(table) : table;
  return config_.l2_normalize ? unit_rows(e) : e;
}

Tensor VectorQuantizer::distances(const Tensor& h) const {
  return squared_distances(h, codebook());
}

Tensor VectorQuantizer::choose_codes(const Tensor& d, double temperature, Generator& gen,
                                     int64_t first_row, int64_t all_rows) {
  NoGradGuard no_grad;
  if (temperature <= 0.0) return argmin(d, 1);
  // Gumbel-max: argmax(-d/T + g) with g = -log(-log(u)) is a sample from softmax(-d/T). Under
  // data parallelism the noise is drawn for the whole global batch and each rank takes its rows,
  // so N ranks sample exactly what one process would.
  const int64_t M = d.size(0), rows = std::max(all_rows, M);
  const Tensor u = clamp(
      rand({rows, d.size(1)}, gen, d.dtype(), d.device()).narrow(0, first_row, M), 1e-20, 1.0);
  const Tensor gumbel = neg(log(neg(log(u))));
  return argmin(sub(mul(d, 1.0 / temperature), gumbel), 1);
}

Tensor VectorQuantizer::quantized_with_gradient(const Tensor& h, const Tensor& codes) const {
  if (!config_.rotation_trick) return add(h, sub(codes, h).detach());  // straight-through
  // Rotation trick: R = I - 2 r r^T + 2 q u^T rotates u = h/|h| onto q = e/|e|, with
  // r = (u + q) / |u + q|, and l = |e|/|h|. R and l are constants, so h_q = l R h equals e in
  // value and passes l R^T g back.
  Tensor u, q, r, scale;
  {
    NoGradGuard no_grad;
    const Tensor hn = sqrt(sum(mul(h, h), {1}, true)), en = sqrt(sum(mul(codes, codes), {1}, true));
    u = div(h, add(hn, 1e-12));
    q = div(codes, add(en, 1e-12));
    r = unit_rows(add(u, q));
    scale = div(en, add(hn, 1e-12));
  }
  const Tensor r_h = sum(mul(r, h), {1}, true), u_h = sum(mul(u, h), {1}, true);
  return mul(scale, add(sub(h, mul(r, mul(r_h, 2.0))), mul(q, mul(u_h, 2.0))));
}

QuantizerOutput VectorQuantizer::forward(const Tensor& z) {
  // A float32 island under mixed precision: a bf16 distance has about 3 significant digits and
  // would flip nearest codes (autocast.h).
  AutocastScope float32(DType::Float32);
  const Tensor z_flat = flatten_latents(z, embed_dim_, "VectorQuantizer");  // [M, D]
  const int64_t N = z.size(0), height = z.size(2), width = z.size(3), K = config_.n_embed;
  const bool training = is_training();
  const Tensor h = to_lookup_space(z_flat);  // [M, d]
  // Data parallelism: this rank holds rows [first_row, first_row + M) of the global batch; the
  // codebook's updates see every rank's vectors so that the codebook stays identical everywhere.
  dist::Communicator& comm = dist::world();
  const int64_t M = h.size(0), all_rows = M * comm.size(), first_row = M * comm.rank();
  const Tensor all_inputs = training ? comm.all_gather(h.detach()) : Tensor();  // [all_rows, d]
  if (training && !initialized()) kmeans_init(all_inputs);

  // Training updates the table in place after this forward (EMA, restarts, CVQ), while backward
  // still needs the codes it saw: build them from a snapshot (a differentiable copy when learned).
  const Tensor codebook_now = codebook(training ? table_->weight.clone() : table_->weight);
  // Distances carry a graph only when a soft-assignment term needs their gradient.
  const bool soft_terms = training && (config_.entropy_weight > 0 || config_.confidence_weight > 0);
  const Tensor d = soft_terms ? squared_distances(h, codebook_now)
                              : squared_distances(h.detach(), codebook_now.detach());
  Generator sampling = stream(RandomStream::CodeSampling);
  const Tensor indices =
      choose_codes(d.detach(), training ? config_.temperature : 0.0, sampling, first_row, all_rows);
  const Tensor codes = embedding(codebook_now, indices);  // [M, d]

  QuantizerOutput out;
  const Tensor commit = mse_loss(h, codes.detach());
  Tensor loss = mul(commit, config_.beta * commitment_scale_);
  out.commit_loss = commit.detach();
  if (config_.codebook != "ema") {
    const Tensor pull = mse_loss(h.detach(), codes);
    loss = add(loss, pull);
    out.codebook_loss = pull.detach();
    if (config_.diversity_weight > 0) {
      const Tensor unit = unit_rows(codebook_now);
      const Tensor gram = matmul(unit, unit.t());
      // off-diagonal mean of cos^2 (the diagonal of unit vectors is exactly 1)
      const Tensor diversity =
          mul(sub(sum(mul(gram, gram)), static_cast<double>(K)), 1.0 / (K * (K - 1.0)));
      loss = add(loss, mul(diversity, config_.diversity_weight));
      out.diversity_loss = diversity.detach();
    }
  }
  if (soft_terms) {
    const Tensor logits = mul(d, -1.0 / config_.entropy_temperature);
    const Tensor p = softmax(logits, 1);
    // The mean assignment over the global batch (a differentiable sum over ranks).
    const Tensor avg = mul(dist::all_reduce_sum_with_grad(sum(p, {0})), 1.0 / all_rows);
    const Tensor h_avg = neg(sum(mul(avg, log(clamp(avg, 1e-12, 1.0)))));  // H(mean p)
    const bool per_vector_needed = config_.confidence_weight > 0 || config_.entropy_loss == "lfq";
    const Tensor h_each =
        per_vector_needed ? mean(neg(sum(mul(p, log_softmax(logits, 1)), {1}))) : Tensor();
    const Tensor entropy = config_.entropy_loss == "lfq"
                               ? sub(h_each, mul(h_avg, config_.lfq_gamma))
                               : rsub(std::log(static_cast<double>(K)), h_avg);
    loss = add(loss, mul(entropy, config_.entropy_weight));
    out.entropy_loss = entropy.detach();
    if (config_.confidence_weight > 0) loss = add(loss, mul(h_each, config_.confidence_weight));
  }

  const Tensor h_q = quantized_with_gradient(h, codes);
  const Tensor z_q_flat = out_proj_ ? out_proj_->forward(h_q) : h_q;
  out.z_q = z_q_flat.view({N, height, width, embed_dim_}).permute({0, 3, 1, 2});
  out.indices = indices.view({N, height, width});
  out.loss = loss;

  out.batch_counts = bincount(indices, K);
  if (training) {
    comm.all_reduce_sum(out.batch_counts);  // the statistics of the global batch
    // A batch with non-finite vectors (a diverging step the trainer will skip) must not poison the
    // codebook: the updates are gated on the device, without a host read (a NaN on any rank makes
    // the gate false on every rank).
    const Tensor finite = all_finite_gate(all_inputs);
    // CVQ anchors on the codebook this forward used, before the EMA update moves it.
    const Tensor all_d = config_.cvq_rate > 0 && comm.size() > 1
                             ? squared_distances(all_inputs, codebook_now.detach())
                             : d.detach();
    ema_update(h.detach(), indices, finite);
    if (config_.cvq_rate > 0) cvq_reseed(all_inputs, all_d, finite);
    last_inputs_ = last_inputs_.defined() && last_inputs_.shape() == all_inputs.shape()
                       ? where(finite, all_inputs, last_inputs_)
                       : all_inputs;  // end_epoch() checks it before restarting codes on it
    // Per-step restarts choose codes on the host: a host read each step, in this mode only.
    if (config_.dead_code_reset == "step" && finite.item() != 0.0) {
      // The statistics come before this step's restarts, so the codes they revive still count
      // dead.
      out.ema_counts = table_->cluster_size.clone();
      Generator restarts = stream(RandomStream::StepRestarts);
      restart_codes(dead_codes(), all_inputs, restarts);
    }
  }
  if (!out.ema_counts.defined()) out.ema_counts = table_->cluster_size.clone();
  out.active_threshold = config_.active_threshold;
  out.dead_threshold = config_.dead_code_threshold;
  return out;
}

Tensor VectorQuantizer::lookup(const Tensor& z, double temperature) {
  NoGradGuard no_grad;
  const Tensor h = to_lookup_space(flatten_latents(z, embed_dim_, "VectorQuantizer"));
  return choose_codes(distances(h), temperature, lookup_gen_)
      .view({z.size(0), z.size(2), z.size(3)});
}

Tensor VectorQuantizer::codes_for(const Tensor& indices) const {
  VQ_CHECK(indices.dim() == 3, "VectorQuantizer::codes_for: expected indices [N, h, w], got {}",
           shape_str(indices.shape()));
  const Tensor codes = embedding(codebook(), indices);  // [N, h, w, d]
  return (out_proj_ ? out_proj_->forward(codes) : codes).permute({0, 3, 1, 2}).contiguous();
}

std::vector<double> VectorQuantizer::ema_counts() const {
  return table_->cluster_size.to_vector<double>();
}

}  // namespace vq::models
