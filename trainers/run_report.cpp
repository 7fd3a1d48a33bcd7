// What a training run reports: the run header, validation over the validation set, sample
// grids, and the summary.
#include <cmath>
#include <cstdio>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "trainers/data/image.h"
#include "trainers/run.h"

namespace vq::train {

using nlohmann::json;

std::string TrainingRun::precision_description() const {
  if (precision_ == DType::Float32) return "float32";
  return fmt::format(
      "{} autocast: convolutions multiply in {} (float32 accumulation), "
      "everything else float32",
      dtype_name(precision_), dtype_name(precision_));
}

void TrainingRun::log_setup() const {
  std::printf("train_vqvae_improved: preset '%s', model '%s' (%lld parameters), %s, %d threads\n",
              t_.preset.c_str(), config_.model.name.c_str(),
              static_cast<long long>(model_->num_parameters()), device_.str().c_str(),
              get_num_threads());
  std::printf("  precision:  %s%s\n", precision_description().c_str(),
              t_.deterministic && device_.is_cuda()
                  ? "; deterministic (fixed-order sums, deterministic cuDNN algorithms)"
                  : "");
  if (comm().size() > 1) {
    std::printf("  processes:  %s; each takes %lld of every batch of %lld\n",
                comm().describe().c_str(), static_cast<long long>(t_.batch_size / comm().size()),
                static_cast<long long>(t_.batch_size));
  }
  if (!precision_note_.empty()) std::printf("  note:       %s\n", precision_note_.c_str());
  std::printf(
      "  data:       train %s; random flips%s\n              val   %s (first %lld per "
      "validation)\n",
      train_loader_->dataset().describe().c_str(),
      t_.random_crop && !is_fashion_mnist(t_.train_dir) ? " and crops" : "",
      val_set_->describe().c_str(),
      static_cast<long long>(t_.val_limit > 0 ? std::min(t_.val_limit, val_set_->size())
                                              : val_set_->size()));
  std::printf("  codebook:   %s\n", config_.quantizer.describe(config_.model.embed_dim).c_str());
  std::printf("  loss:       L1 %g, adversarial %g (from step %lld), perceptual %g\n",
              config_.loss.l1_weight, config_.loss.adversarial_weight,
              static_cast<long long>(config_.loss.disc_start), config_.loss.perceptual_weight);
  std::printf("  perceptual: %s\n", loss_->perceptual_description().c_str());
  std::printf("  quality:    L1, PSNR, SSIM; %s\n", quality_->stlpips_description().c_str());
  std::printf("  best model: lowest validation %s (--best_metric %s)\n",
              quality_metric_label(t_.best_metric).c_str(), t_.best_metric.c_str());
  // --max_steps can end the run before the epochs do: say so.
  const std::string stop = total_steps_ < t_.epochs * steps_per_epoch_
                               ? fmt::format(", stopping after step {} (--max_steps)", total_steps_)
                               : std::string();
  std::printf(
      "  schedule:   %lld epochs x %lld steps of %lld images%s, lr %g (%s), outputs in %s\n",
      static_cast<long long>(t_.epochs), static_cast<long long>(steps_per_epoch_),
      static_cast<long long>(t_.batch_size), stop.c_str(), t_.lr, t_.lr_schedule.c_str(),
      t_.model_dir.c_str());
  std::fflush(stdout);
}

Validation TrainingRun::validate() {
  model_->eval();
  NoGradGuard no_grad;
  LoaderOptions lo = LoaderOptions::single_pass(t_.batch_size, t_.val_limit);
  lo.threads = t_.loader_threads;
  lo.shard = comm().rank();  // each rank measures its share; the sums are combined below
  lo.shards = comm().size();
  DataLoader loader(val_set_, config_.model.in_channels, config_.model.resolution, lo);
  Validation v;
  Tensor counts = zeros({model_->quantizer().num_codes()}, DType::Int64);
  quality_->reset();
  while (auto batch = loader.next()) {
    const Tensor x = batch->images.to(device_);
    const auto out = model_->forward(x);
    // Unshuffled, an image's dataset index is its place in the pass.
    quality_->add(out.reconstruction, batch->images, &batch->indices);
    counts.add_(bincount(out.quant.indices.reshape({-1}), counts.size(0)).cpu());
  }
  quality_->all_reduce(comm());
  comm().all_reduce_sum(counts);
  v.images = quality_->images();
  v.unreadable = static_cast<int64_t>(comm().sum(static_cast<double>(loader.bad_images())));
  v.quality = quality_->mean();
  v.stlpips_images = quality_->stlpips_measured();
  const auto& q = config_.quantizer;
  v.stats = models::codebook_stats(counts.to_vector<int64_t>(), model_->quantizer().ema_counts(),
                                   q.active_threshold, q.dead_code_threshold);
  model_->train();
  return v;
}

void TrainingRun::save_samples(int64_t epoch) {
  NoGradGuard no_grad;
  model_->eval();
  const int64_t n = std::min(t_.num_samples, val_set_->size());
  const int64_t C = config_.model.in_channels, S = config_.model.resolution;
  Tensor inputs = Tensor::empty({n, C, S, S});
  int64_t readable = 0;
  for (int64_t i = 0; i < n; ++i) {
    try {  // an unreadable image was already reported by the validation loader
      val_set_->load(i, {}, inputs.data<float>() + readable * C * S * S);
      ++readable;
    } catch (const Error&) {
    }
  }
  if (readable > 0) {
    inputs = inputs.narrow(0, 0, readable);
    const Tensor recon = model_->forward(inputs.to(device_)).reconstruction;
    write_comparison_grid(fmt::format("{}/epoch_{:04}.png", t_.sample_dir, epoch + 1), inputs,
                          recon);
  }
  model_->train();
}

std::string TrainingRun::summary_json(bool interrupted, double seconds) const {
  const auto& s = last_val_.stats;
  // null when this process ran no validation (e.g. resuming a finished run)
  auto val = [&](auto v) { return last_val_.images > 0 ? json(v) : json(); };
  json j = {
      {"preset", t_.preset},
      {"model_config", config_.model.name},
      {"steps", step_},
      {"epochs_completed", epoch_},
      {"interrupted", interrupted},
      {"early_stopped", early_stopped_},
      {"seconds", seconds},
      {"images_per_s", seconds > 0 ? static_cast<double>(session_images_) / seconds : 0.0},
      {"best_metric", t_.best_metric},
      {"best_val_loss", std::isfinite(best_val_loss_) ? json(best_val_loss_) : json()},
      {"val_l1", val(last_val_.quality.l1)},
      {"val_psnr", val(last_val_.quality.psnr)},
      {"val_ssim", val(last_val_.quality.ssim)},
      {"val_stlpips_vgg", val(last_val_.quality.stlpips_vgg)},
      {"val_stlpips_alex", val(last_val_.quality.stlpips_alex)},
      {"val_stlpips_images", val(last_val_.stlpips_images)},
      {"val_utilization", val(s.batch_utilization)},
      {"val_used_codes", val(s.used_codes)},
      {"val_norm_entropy", val(s.batch_norm_entropy)},
      {"val_perplexity", val(s.perplexity)},
      {"num_codes", model_->quantizer().num_codes()},
      {"active_codes_ema", s.active_codes_ema},
      {"dead_codes_ema", s.dead_codes},
      {"nonfinite_steps_skipped", generator_skipped_},
      {"discriminator_updates_skipped", discriminator_skipped_},
      {"loss_scale", stepper_->generator_scaler() != nullptr
                         ? json({{"generator", stepper_->generator_scaler()->scale()},
                                 {"discriminator", stepper_->discriminator_scaler()->scale()},
                                 {"overflow_skips", loss_scale_skips_}})
                         : json()},
      {"last_maintenance", maintenance_epoch_ > 0 ? json({{"after_epoch", maintenance_epoch_},
                                                          {"codes_touched", maintenance_codes_}})
                                                  : json()},
      {"unreadable_images_skipped", train_loader_->bad_images()},
      {"upscaled_images", train_loader_->dataset().upscaled_images()},
      {"val_unreadable_images_skipped", val(last_val_.unreadable)},
      {"perceptual", loss_->perceptual_description()},
      {"device", device_.str()},
      {"processes", comm().size()},
      // What this rank handed to collectives per training step (validation's reductions and
      // the epoch ends included): gradients, codebook statistics, gathered latents.
      {"collective_mb_per_step",
       step_ > session_first_step_
           ? json(static_cast<double>(comm().payload_bytes() - session_first_payload_) / 1e6 /
                  static_cast<double>(step_ - session_first_step_))
           : json()},
      {"precision", precision_description()},
      {"threads", get_num_threads()},
      {"codebook_events", epoch_notes_},
      {"best_model", paths(".safetensors")},
      {"last_checkpoint", paths(".last.safetensors")},
      {"metrics", paths(".metrics.jsonl")}};
  return j.dump(2);
}

}  // namespace vq::train
