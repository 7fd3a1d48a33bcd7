#include "models/vqgan.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "models/vector_quantizer.h"

namespace vq::models {

VQModel::VQModel(const ModelConfig& model, const QuantizerConfig& quantizer, uint64_t seed)
    : config_(model) {
  config_.validate();
  // Every layer draws its initial weights from this one stream, in construction order.
  Generator init = stream_generator(seed, RandomStream::ModelInit);
  encoder_ = register_module("encoder", std::make_shared<Encoder>(config_, init));
  decoder_ = register_module("decoder", std::make_shared<Decoder>(config_, init));
  quantize_ = register_module("quantize", make_quantizer(quantizer, config_.embed_dim, seed, init));
  quant_conv_ = register_module(
      "quant_conv", std::make_shared<nn::Conv2d>(init, config_.z_channels, config_.embed_dim, 1));
  post_quant_conv_ =
      register_module("post_quant_conv",
                      std::make_shared<nn::Conv2d>(init, config_.embed_dim, config_.z_channels, 1));
}

Tensor VQModel::encode_latent(const Tensor& x) {
  VQ_CHECK(x.dim() == 4 && x.size(1) == config_.in_channels && x.size(2) == config_.resolution &&
               x.size(3) == config_.resolution,
           "VQModel: expected images [N, {}, {}, {}], got {}", config_.in_channels,
           config_.resolution, config_.resolution, shape_str(x.shape()));
  return quant_conv_->forward(encoder_->forward(x));
}

Tensor VQModel::decode(const Tensor& z_q) {
  return decoder_->forward(post_quant_conv_->forward(z_q));
}

VQModel::Output VQModel::forward(const Tensor& x) {
  Output out;
  out.quant = quantize_->forward(encode_latent(x));
  out.reconstruction = decode(out.quant.z_q);
  return out;
}

Tensor VQModel::encode_indices(const Tensor& x) {
  NoGradGuard no_grad;
  return quantize_->lookup(encode_latent(x));
}

Tensor VQModel::decode_indices(const Tensor& indices) {
  NoGradGuard no_grad;
  return decode(quantize_->codes_for(indices));
}

std::string VQModel::load_weights(const nn::NamedTensors& state) {
  nn::NamedTensors completed = state;
  auto find = [&](const std::string& name) -> const Tensor* {
    for (const auto& [n, t] : completed) {
      if (n == name) return &t;
    }
    return nullptr;
  };
  const Tensor* weight = find("quantize.embedding.weight");
  std::vector<std::string> derived;
  if (weight != nullptr) {
    const Tensor codes = weight->to(DType::Float32);
    const int64_t K = codes.size(0);
    const nn::NamedTensors own = state_dict();
    const bool has_ema_sums = std::any_of(own.begin(), own.end(), [](const auto& e) {
      return e.first == "quantize.embedding.embed_avg";
    });
    const Tensor* counts_in_file = find("quantize.embedding.cluster_size");
    const Tensor counts = counts_in_file ? counts_in_file->to(DType::Float32) : ones({K});
    if (counts_in_file == nullptr) {
      completed.emplace_back("quantize.embedding.cluster_size", counts);
      derived.push_back("cluster_size = 1");
    }
    if (has_ema_sums && find("quantize.embedding.embed_avg") == nullptr) {
      // S_k = e_k N_k, so the first EMA update keeps each code where it is.
      completed.emplace_back("quantize.embedding.embed_avg", mul(codes, counts.unsqueeze(1)));
      derived.push_back("embed_avg = the codes x their counts");
    }
    if (find("quantize.initialized") == nullptr) {
      completed.emplace_back("quantize.initialized", ones({}, DType::UInt8));
      derived.push_back("initialized");
    }
  }
  load_state_dict(completed);
  if (derived.empty()) return {};
  return fmt::format(
      "the checkpoint has no quantizer statistics (a taming VectorQuantizer2?); derived {}",
      fmt::join(derived, ", "));
}

}  // namespace vq::models
