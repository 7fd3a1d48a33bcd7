// The training loop: steps, non-finite handling, the end of an epoch (evaluation first, then
// the codebook maintenance that prepares the next one) and stopping. run.h lists the parts.
#include "trainers/trainer.h"

#include <atomic>
#include <cmath>
#include <cstdio>

#include "autograd/ops.h"
#include "nn/file_io.h"
#include "trainers/progress.h"
#include "trainers/run.h"

namespace vq::train {

namespace {
std::atomic<bool> g_stop_requested{false};
}  // namespace

using nlohmann::json;

bool TrainingRun::train_step(const Batch& batch) {
  const auto& q = config_.quantizer;
  const double epochs_done = static_cast<double>(step_) / static_cast<double>(steps_per_epoch_);
  const double commitment = q.commitment_warmup_epochs > 0
                                ? std::min(1.0, epochs_done / q.commitment_warmup_epochs)
                                : 1.0;
  const double lr = schedule_.lr_at(step_);
  const TrainStep::Result r = stepper_->run(batch.images.to(device_), step_, commitment, lr);
  // A float16 overflow while the loss scaler is still above 1 only lowers the scale; it is not
  // counted towards stopping the run (a diverged run keeps overflowing until the scale is below 1).
  if (r.loss_scale_overflow) ++loss_scale_skips_;
  if (r.generator_skipped) {
    ++generator_skipped_;
    if (!r.loss_scale_overflow) count_nonfinite(r.nonfinite);
    return false;
  }
  if (r.discriminator_skipped) {
    ++discriminator_skipped_;
    if (!r.loss_scale_overflow) count_nonfinite(r.nonfinite);
  } else {
    nonfinite_run_ = 0;
  }
  interval_images_ += batch.images.size(0) * comm().size();  // every rank's share of the batch
  session_images_ += batch.images.size(0) * comm().size();
  // The losses are on the host already (each half-step's one read); the rest stays on the device
  // until a step that logs (read_metrics()).
  last_metrics_["step"] = step_ + 1;
  last_metrics_["epoch"] = epoch_ + 1;
  last_metrics_["loss"] = r.loss;
  last_metrics_["d_loss"] = r.d_loss;
  last_metrics_["commitment_scale"] = commitment;
  last_metrics_["lr"] = lr;
  if (r.loss_scale > 0) last_metrics_["loss_scale"] = r.loss_scale;
  pending_metrics_ = r.metrics;
  return true;
}

void TrainingRun::read_metrics() {
  const TrainStep::Metrics::Values v = pending_metrics_.read();
  const auto& s = v.stats;
  const json values = {{"l1", v.l1},
                       {"perceptual", v.perceptual},
                       {"commit_loss", v.commit_loss},
                       {"codebook_loss", v.codebook_loss},
                       {"entropy_loss", v.entropy_loss},
                       {"g_adv", v.g_adv},
                       {"adaptive_weight", v.adaptive_weight},
                       {"num_codes", s.num_codes},
                       {"active_codes_ema", s.active_codes_ema},
                       {"batch_utilization", s.batch_utilization},
                       {"batch_entropy", s.batch_entropy},
                       {"batch_norm_entropy", s.batch_norm_entropy},
                       {"ema_entropy", s.ema_entropy},
                       {"ema_norm_entropy", s.ema_norm_entropy},
                       {"perplexity", s.perplexity},
                       {"dead_codes", s.dead_codes}};
  last_metrics_.update(values);
}

void TrainingRun::count_nonfinite(const std::string& what) {
  std::fprintf(stderr, "\nwarning: step %lld: not finite: %s (%lld in a row)\n",
               static_cast<long long>(step_), what.c_str(),
               static_cast<long long>(++nonfinite_run_));
  VQ_CHECK(nonfinite_run_ < t_.max_nonfinite_steps,
           "stopping: {} consecutive steps with a non-finite loss or gradient (the run diverged; "
           "try a lower --lr{}). The last good checkpoint is {} (resume with --resume)",
           nonfinite_run_, what.find("discriminator") == std::string::npos ? " or --grad_clip" : "",
           paths(".last.safetensors"));
}

// Validation, samples, the best checkpoint and early stopping: all measure the codebook as the
// epoch's training left it (the maintenance preparing the next epoch runs after them).
void TrainingRun::evaluate_epoch(int64_t epoch, bool complete) {
  last_val_ = validate();
  const auto& s = last_val_.stats;
  const ImageQuality& q = last_val_.quality;
  const std::string stlpips =
      last_val_.stlpips_images > 0
          ? fmt::format(", ST-LPIPS VGG {:.4f} / AlexNet {:.4f} (first {})", q.stlpips_vgg,
                        q.stlpips_alex, last_val_.stlpips_images)
          : "";
  std::printf(
      "  validation: L1 %.4f, PSNR %.2f dB, SSIM %.4f%s, utilisation %.1f%% (%lld of %lld codes), "
      "normalised entropy %.3f, perplexity %.1f on %lld images\n",
      q.l1, q.psnr, q.ssim, stlpips.c_str(), 100 * s.batch_utilization,
      static_cast<long long>(s.used_codes), static_cast<long long>(s.num_codes),
      s.batch_norm_entropy, s.perplexity, static_cast<long long>(last_val_.images));
  // Small images are upscaled silently by the loader; say so once their count is known (and again
  // when it grows: a folder is decoded lazily, over the first pass).
  const int64_t upscaled = train_loader_->dataset().upscaled_images();
  if (upscaled > upscaled_reported_) {
    std::printf(
        "  note:       %lld images were smaller than %lld px on their short side and were "
        "upscaled%s (--min_image_size N skips such images instead)\n",
        static_cast<long long>(upscaled), static_cast<long long>(config_.model.resolution),
        comm().size() > 1 ? " (this process's images)" : "");
    upscaled_reported_ = upscaled;
  }
  json line = {{"step", step_},
               {"epoch", epoch + 1},
               {"val_l1", q.l1},
               {"val_psnr", q.psnr},
               {"val_ssim", q.ssim},
               {"val_stlpips_vgg", q.stlpips_vgg},
               {"val_stlpips_alex", q.stlpips_alex},
               {"val_utilization", s.batch_utilization},
               {"val_norm_entropy", s.batch_norm_entropy},
               {"val_perplexity", s.perplexity},
               {"val_used_codes", s.used_codes}};
  if (!complete) line["partial_epoch"] = true;
  if (metrics_) metrics_->write(line.dump());
  if (comm().is_root()) save_samples(epoch);
  if (!complete) {
    // A partial epoch (--max_steps) is reported but decides nothing: an uninterrupted run never
    // sees it, and a resumed run must end as that one would. Only a run without any best model
    // yet gets one now, which the next complete epoch replaces.
    if (!std::isfinite(best_val_loss_)) save(true);
    return;
  }
  const double score = quality_metric(q, t_.best_metric);
  if (score < best_val_loss_) {
    best_val_loss_ = score;
    epochs_without_improvement_ = 0;
    save(true);
  } else {
    ++epochs_without_improvement_;
  }
  if (patience_exhausted()) {
    std::printf("  early stopping: validation %s has not improved for %lld epochs\n",
                quality_metric_label(t_.best_metric).c_str(),
                static_cast<long long>(epochs_without_improvement_));
    early_stopped_ = true;
  }
}

bool TrainingRun::patience_exhausted() const {
  return t_.early_stopping_patience > 0 &&
         epochs_without_improvement_ >= t_.early_stopping_patience;
}

bool TrainingRun::continues() const {
  return epoch_ < t_.epochs && step_ < total_steps_ && !early_stopped_;
}

// The epoch-end codebook maintenance (restarts, low-usage resets, expansion) prepares the next
// epoch, keyed to the step that starts it. It runs after the epoch was measured and saved as
// best, and only when another epoch follows, so nothing measured or kept as the final model has
// codes the decoder never trained on.
void TrainingRun::run_maintenance() {
  model_->quantizer().set_step(step_);
  const auto m = model_->quantizer().end_epoch(epoch_ - 1);
  maintenance_pending_ = false;
  maintenance_epoch_ = epoch_;
  maintenance_codes_ = m.codes_touched;
  if (!m.note.empty()) {
    std::printf("  codebook: %s (for epoch %lld)\n", m.note.c_str(),
                static_cast<long long>(epoch_ + 1));
    epoch_notes_.push_back(fmt::format("after epoch {}: {}", epoch_, m.note));
  }
}

TrainSummary TrainingRun::go() {
  log_setup();
  const auto start = Clock::now();
  session_first_step_ = step_;
  session_first_payload_ = comm().payload_bytes();
  bool interrupted = false, mid_epoch = false;
  if (maintenance_pending_ && continues()) run_maintenance();  // the earlier run ended before it
  while (continues()) {
    const int64_t epoch_end = std::min((epoch_ + 1) * steps_per_epoch_, total_steps_);
    ProgressBar bar(fmt::format("epoch {}/{}", epoch_ + 1, t_.epochs),
                    epoch_end - epoch_ * steps_per_epoch_, t_.log_every);
    while (step_ < epoch_end) {
      const auto batch = train_loader_->next();
      const bool done = train_step(*batch);
      ++step_;
      if (done) {
        const double seconds = seconds_since(interval_start_);
        const double rate = interval_images_ / std::max(seconds, 1e-9);
        last_metrics_["images_per_s"] = rate;
        // Every log_every steps, and the run's last step: a short run still logs its metrics.
        // The bar shows the loss of every step and the rest as of the last step that logged.
        if (step_ % t_.log_every == 0 || step_ == total_steps_) {
          read_metrics();
          if (metrics_) metrics_->write(last_metrics_.dump());
          interval_start_ = Clock::now();
          interval_images_ = 0;
        }
        bar.update(step_ - epoch_ * steps_per_epoch_,
                   fmt::format("loss {:.4f}  L1 {:.4f}  util {:.1f}%  H {:.3f}  {:.1f} img/s",
                               last_metrics_["loss"].get<double>(), last_metrics_.value("l1", 0.0),
                               100 * last_metrics_.value("batch_utilization", 0.0),
                               last_metrics_.value("batch_norm_entropy", 0.0), rate));
      }
      // A stop on an epoch's last step lets the epoch end (validation, saving, maintenance) first.
      // Ranks decide together: a signal may reach them at different steps.
      if (stop_requested() && step_ < epoch_end) {
        interrupted = mid_epoch = true;
        break;
      }
    }
    if (mid_epoch) break;
    const bool complete = step_ == (epoch_ + 1) * steps_per_epoch_;
    bar.finish(fmt::format("loss {:.4f}", last_metrics_.value("loss", 0.0)));
    evaluate_epoch(epoch_, complete);
    if (complete) {
      ++epoch_;
      maintenance_pending_ = true;
    }
    // A run stopped here by a signal also continues later, so the maintenance runs now and the
    // checkpoint is written after it; a run that ends keeps its trained codebook (and the
    // checkpoint records that the maintenance is pending, should it be extended).
    if (maintenance_pending_ && continues()) run_maintenance();
    save(false);
    interval_start_ = Clock::now();  // the rate shown next excludes validation and saving
    interval_images_ = 0;
    if (stop_requested()) {
      interrupted = continues();  // a stop during the run's last epoch end changes nothing
      break;
    }
  }
  if (interrupted) {
    if (mid_epoch) save(false);  // an epoch end has just saved
    std::printf("\ninterrupted at step %lld (continue with --resume %s)\n",
                static_cast<long long>(step_), paths(".last.safetensors").c_str());
  }
  TrainSummary summary;
  summary.interrupted = interrupted;
  summary.json = summary_json(interrupted, seconds_since(start));
  if (comm().is_root()) nn::write_file_atomically(paths(".summary.json"), summary.json + "\n");
  return summary;
}

void request_stop() { g_stop_requested = true; }

bool TrainingRun::stop_requested() const { return comm().any(g_stop_requested); }

TrainSummary train(const TrainConfig& config, const std::string& resume_path) {
  g_stop_requested = false;
  TrainingRun run(config, resume_path);
  return run.go();
}

}  // namespace vq::train
