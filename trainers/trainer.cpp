#include "trainers/trainer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "models/vqgan.h"
#include "models/vqgan_loss.h"
#include "nn/atomic_file.h"
#include "nn/checkpoint.h"
#include "nn/optim/lr_schedule.h"
#include "nn/optim/optimizer.h"
#include "trainers/data/image.h"
#include "trainers/data/loader.h"
#include "trainers/metrics.h"
#include "trainers/model_io.h"
#include "trainers/progress.h"
#include "trainers/train_step.h"

namespace vq::train {

namespace {

std::atomic<bool> g_stop_requested{false};

// Where a best-model file's run keeps its resumable checkpoint: <name>.last.safetensors.
std::string last_checkpoint_beside(const std::string& path) {
  const std::string ext = ".safetensors";
  if (path.size() > ext.size() && path.ends_with(ext))
    return path.substr(0, path.size() - ext.size()) + ".last" + ext;
  return "the run's <name>.last.safetensors";
}

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Validation {
  double l1 = 0, psnr = 0;
  models::CodebookStats stats;  // over the whole validation set
  int64_t images = 0;
  int64_t unreadable = 0;  // images skipped because they could not be read
};

class Run {
 public:
  Run(const TrainConfig& config, const std::string& resume_path);
  TrainSummary go();

 private:
  void log_setup() const;
  void check_resume_fits(const nn::LoadedCheckpoint& resume, const std::string& path) const;
  bool train_step(const Batch& batch);  // false when the step was skipped (non-finite loss)
  void count_nonfinite(const std::string& what);
  Validation validate();
  void evaluate_epoch(int64_t epoch, bool complete);
  bool continues() const;
  void run_maintenance();
  void save_samples(int64_t epoch);
  void save(bool best);
  bool save_latest();
  std::string paths(const std::string& suffix) const;
  std::string summary_json(bool interrupted, double seconds) const;

  TrainConfig config_;
  const TrainingConfig& t_;
  Device device_;
  std::unique_ptr<TrainStep> stepper_;
  models::VQModel* model_ = nullptr;
  models::VQGANLoss* loss_ = nullptr;
  nn::LrSchedule schedule_;
  std::unique_ptr<DataLoader> train_loader_;
  std::shared_ptr<Dataset> val_set_;
  std::unique_ptr<JsonlWriter> metrics_;

  int64_t steps_per_epoch_ = 0, total_steps_ = 0;
  int64_t step_ = 0, epoch_ = 0;
  double best_val_loss_ = std::numeric_limits<double>::infinity();
  int64_t epochs_without_improvement_ = 0;
  int64_t nonfinite_run_ = 0;          // consecutive steps with anything non-finite
  int64_t generator_skipped_ = 0;      // steps that updated nothing
  int64_t discriminator_skipped_ = 0;  // steps whose discriminator update was skipped
  bool early_stopped_ = false;
  // The epoch end's codebook maintenance has not run yet (see go()).
  bool maintenance_pending_ = false;
  int64_t maintenance_epoch_ = 0, maintenance_codes_ = 0;  // the last one: after epoch, codes
  Validation last_val_;
  std::vector<std::string> epoch_notes_;
  // The latest step's numbers, for the progress bar and the log.
  json last_metrics_;
  Clock::time_point interval_start_ = Clock::now();
  int64_t interval_images_ = 0;
  int64_t session_images_ = 0;  // trained in this process (a resumed run counts from its resume)
};

Run::Run(const TrainConfig& config, const std::string& resume_path)
    : config_(config), t_(config_.training), device_(parse_device(config.training.device)) {
  nn::LoadedCheckpoint resume;
  if (!resume_path.empty()) {
    VQ_CHECK(std::filesystem::exists(resume_path), "--resume: '{}' does not exist", resume_path);
    resume = nn::load_checkpoint(resume_path);
    VQ_CHECK(resume.has_state,
             "--resume: '{}' has no training state (not a .last.safetensors checkpoint?)",
             resume_path);
    VQ_CHECK(!resume.group("optimizer.generator.").empty(),
             "--resume: '{}' is a best-model file (weights only, no optimizer state); resume "
             "from {}",
             resume_path, last_checkpoint_beside(resume_path));
  }
  config_.validate();
  VQ_CHECK(!t_.use_amp,
           "--use_amp: mixed precision needs float16/bfloat16 kernels, which this build's {} "
           "backend does not have; "
           "train in float32 (drop --use_amp)",
           device_.str());
  set_num_threads(t_.num_threads > 0 ? static_cast<int>(t_.num_threads) : get_num_threads());
  zeros({1}, DType::Float32, device_);  // fails now, with the reason, if the device cannot be used

  stepper_ = std::make_unique<TrainStep>(config_, device_);
  model_ = &stepper_->model();
  loss_ = &stepper_->loss();

  auto train_set =
      open_dataset(t_.train_dir, config_.model.in_channels, config_.model.resolution, "train");
  val_set_ = open_dataset(t_.val_dir, config_.model.in_channels, config_.model.resolution, "test");
  LoaderOptions lo;
  lo.batch_size = t_.batch_size;
  lo.flip = true;
  lo.seed = t_.seed;
  lo.threads = t_.loader_threads;
  train_loader_ = std::make_unique<DataLoader>(train_set, config_.model.in_channels,
                                               config_.model.resolution, lo);
  steps_per_epoch_ =
      t_.steps_per_epoch > 0 ? t_.steps_per_epoch : train_loader_->batches_per_pass();
  total_steps_ = steps_per_epoch_ * t_.epochs;
  if (t_.max_steps > 0) total_steps_ = std::min(total_steps_, t_.max_steps);
  schedule_ = nn::LrSchedule{nn::LrSchedule::parse_kind(t_.lr_schedule), t_.lr, t_.warmup_steps,
                             total_steps_, t_.min_lr};

  std::filesystem::create_directories(t_.model_dir);
  std::filesystem::create_directories(t_.sample_dir);
  if (!resume_path.empty()) {
    check_resume_fits(resume, resume_path);
    model_->load_weights(resume.without(kTrainingOnlyPrefixes));
    loss_->discriminator().load_state_dict(resume.group("loss.discriminator."));
    stepper_->generator_optimizer().load_state_dict(resume.group("optimizer.generator."));
    stepper_->discriminator_optimizer().load_state_dict(resume.group("optimizer.discriminator."));
    step_ = resume.state.step;
    epoch_ = resume.state.epoch;
    VQ_CHECK(epoch_ * steps_per_epoch_ <= step_ && step_ <= (epoch_ + 1) * steps_per_epoch_,
             "--resume: the checkpoint is at step {} in epoch {}, which does not fit {} steps per "
             "epoch; resume with the run's own --steps_per_epoch",
             step_, epoch_ + 1, steps_per_epoch_);
    best_val_loss_ = resume.state.best_val_loss;
    epochs_without_improvement_ = resume.state.epochs_without_improvement;
    maintenance_pending_ = resume.state.maintenance_pending;
    for (const auto& [name, t] : resume.group(kPendingMaintenancePrefix)) {
      if (name == "inputs") model_->quantizer().set_maintenance_inputs(t);
    }
    train_loader_->skip_to(step_);
    std::printf("resumed from %s at step %lld (epoch %lld)\n", resume_path.c_str(),
                static_cast<long long>(step_), static_cast<long long>(epoch_));
    const int64_t dropped = truncate_jsonl_after_step(paths(".metrics.jsonl"), step_);
    if (dropped > 0) {
      std::printf(
          "  metrics: dropped %lld lines logged after step %lld (they will be logged "
          "again)\n",
          static_cast<long long>(dropped), static_cast<long long>(step_));
    }
  }
  metrics_ = std::make_unique<JsonlWriter>(paths(".metrics.jsonl"), !resume_path.empty());
}

// A resumed run must follow the trajectory the checkpoint started: the same data order, flips
// and sampling (--seed), the same position in the data (--batch_size), and for a cosine schedule
// the same length. Longer runs are fine where the schedule does not depend on the length.
void Run::check_resume_fits(const nn::LoadedCheckpoint& resume, const std::string& path) const {
  const TrainingConfig saved = config_of(resume, path).training;
  VQ_CHECK(t_.seed == saved.seed,
           "--resume: --seed {} differs from the checkpoint's seed {} (it decides the data order, "
           "flips and code sampling); resume without --seed",
           t_.seed, saved.seed);
  VQ_CHECK(t_.batch_size == saved.batch_size,
           "--resume: --batch_size {} differs from the checkpoint's batch size {} (the position "
           "in the data depends on it); resume without --batch_size",
           t_.batch_size, saved.batch_size);
  const int64_t planned = resume.state.total_steps;
  VQ_CHECK(
      schedule_.kind != nn::LrSchedule::Kind::Cosine || planned == 0 || planned == total_steps_,
      "--resume: the cosine LR schedule was planned for {} steps and would now last {} "
      "(from --epochs, --max_steps and --steps_per_epoch); a cosine run cannot change its "
      "length: keep the run's values, or use --lr_schedule constant/warmup for runs you "
      "extend",
      planned, total_steps_);
}

std::string Run::paths(const std::string& suffix) const {
  return (std::filesystem::path(t_.model_dir) / (t_.model_name + suffix)).string();
}

void Run::log_setup() const {
  std::printf("train_vqvae_improved: preset '%s', model '%s' (%lld parameters), %s, %d threads\n",
              t_.preset.c_str(), config_.model.name.c_str(),
              static_cast<long long>(model_->num_parameters()), device_.str().c_str(),
              get_num_threads());
  std::printf("  data:       train %s\n              val   %s (first %lld per validation)\n",
              train_loader_->dataset().describe().c_str(), val_set_->describe().c_str(),
              static_cast<long long>(t_.val_limit > 0 ? std::min(t_.val_limit, val_set_->size())
                                                      : val_set_->size()));
  std::printf("  codebook:   %s\n", config_.quantizer.describe(config_.model.embed_dim).c_str());
  std::printf("  loss:       L1 %g, adversarial %g (from step %lld), perceptual %g\n",
              config_.loss.l1_weight, config_.loss.adversarial_weight,
              static_cast<long long>(config_.loss.disc_start), config_.loss.perceptual_weight);
  std::printf("  perceptual: %s\n", loss_->perceptual_description().c_str());
  std::printf("  schedule:   %lld epochs x %lld steps of %lld images, lr %g (%s), outputs in %s\n",
              static_cast<long long>(t_.epochs), static_cast<long long>(steps_per_epoch_),
              static_cast<long long>(t_.batch_size), t_.lr, t_.lr_schedule.c_str(),
              t_.model_dir.c_str());
  std::fflush(stdout);
}

bool Run::train_step(const Batch& batch) {
  const auto& q = config_.quantizer;
  const double epochs_done = static_cast<double>(step_) / static_cast<double>(steps_per_epoch_);
  const double commitment = q.commitment_warmup_epochs > 0
                                ? std::min(1.0, epochs_done / q.commitment_warmup_epochs)
                                : 1.0;
  const double lr = schedule_.lr_at(step_);
  const TrainStep::Result r = stepper_->run(batch.images.to(device_), step_, commitment, lr);
  if (r.generator_skipped) {
    ++generator_skipped_;
    count_nonfinite(r.nonfinite);
    return false;
  }
  if (r.discriminator_skipped) {
    ++discriminator_skipped_;
    count_nonfinite(r.nonfinite);
  } else {
    nonfinite_run_ = 0;
  }
  const auto& s = r.stats;
  interval_images_ += batch.images.size(0);
  session_images_ += batch.images.size(0);
  last_metrics_ = {{"step", step_ + 1},
                   {"epoch", epoch_ + 1},
                   {"loss", r.loss},
                   {"l1", r.l1},
                   {"perceptual", r.perceptual},
                   {"commit_loss", r.commit_loss},
                   {"codebook_loss", r.codebook_loss},
                   {"entropy_loss", r.entropy_loss},
                   {"g_adv", r.g_adv},
                   {"adaptive_weight", r.adaptive_weight},
                   {"d_loss", r.d_loss},
                   {"num_codes", s.num_codes},
                   {"active_codes_ema", s.active_codes_ema},
                   {"batch_utilization", s.batch_utilization},
                   {"batch_entropy", s.batch_entropy},
                   {"batch_norm_entropy", s.batch_norm_entropy},
                   {"ema_entropy", s.ema_entropy},
                   {"ema_norm_entropy", s.ema_norm_entropy},
                   {"perplexity", s.perplexity},
                   {"dead_codes", s.dead_codes},
                   {"commitment_scale", commitment},
                   {"lr", lr}};
  return true;
}

void Run::count_nonfinite(const std::string& what) {
  std::fprintf(stderr, "\nwarning: step %lld: not finite: %s (%lld in a row)\n",
               static_cast<long long>(step_), what.c_str(),
               static_cast<long long>(++nonfinite_run_));
  VQ_CHECK(nonfinite_run_ < t_.max_nonfinite_steps,
           "stopping: {} consecutive steps with a non-finite loss or gradient (the run diverged; "
           "try a lower --lr or --grad_clip). The last good checkpoint is {} (resume with "
           "--resume)",
           nonfinite_run_, paths(".last.safetensors"));
}

Validation Run::validate() {
  model_->eval();
  NoGradGuard no_grad;
  LoaderOptions lo = LoaderOptions::single_pass(t_.batch_size, t_.val_limit);
  lo.threads = t_.loader_threads;
  DataLoader loader(val_set_, config_.model.in_channels, config_.model.resolution, lo);
  Validation v;
  std::vector<int64_t> counts(model_->quantizer().num_codes(), 0);
  double l1_sum = 0, psnr_sum = 0;
  while (auto batch = loader.next()) {
    const Tensor x = batch->images.to(device_);
    const auto out = model_->forward(x);
    const int64_t n = x.size(0);
    l1_sum += l1_loss(out.reconstruction, x).item() * n;
    for (double p : psnr_per_image(out.reconstruction.cpu(), batch->images)) psnr_sum += p;
    const auto batch_counts =
        bincount(out.quant.indices.reshape({-1}), static_cast<int64_t>(counts.size()))
            .to_vector<int64_t>();
    for (size_t k = 0; k < counts.size(); ++k) counts[k] += batch_counts[k];
    v.images += n;
  }
  v.unreadable = loader.bad_images();
  v.l1 = l1_sum / v.images;
  v.psnr = psnr_sum / v.images;
  const auto& q = config_.quantizer;
  v.stats = models::codebook_stats(counts, model_->quantizer().ema_counts(), q.active_threshold,
                                   q.dead_code_threshold);
  model_->train();
  return v;
}

void Run::save_samples(int64_t epoch) {
  NoGradGuard no_grad;
  model_->eval();
  const int64_t n = std::min(t_.num_samples, val_set_->size());
  const int64_t C = config_.model.in_channels, S = config_.model.resolution;
  Tensor inputs = Tensor::empty({n, C, S, S});
  int64_t readable = 0;
  for (int64_t i = 0; i < n; ++i) {
    try {  // an unreadable image was already reported by the validation loader
      val_set_->load(i, false, inputs.data<float>() + readable * C * S * S);
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

void Run::save(bool best) {
  nn::TrainingState state;
  state.step = step_;
  state.epoch = epoch_;
  state.total_steps = total_steps_;
  state.maintenance_pending = maintenance_pending_;
  state.best_val_loss = best_val_loss_;
  state.epochs_without_improvement = epochs_without_improvement_;
  // The stored config describes the model as it is now (codebook expansion changes K).
  TrainConfig current = config_;
  current.quantizer.n_embed = model_->quantizer().num_codes();
  state.config_json = current.to_json();
  if (best) {
    nn::save_checkpoint(paths(".safetensors"), {{"", model_->state_dict()}}, state);
    return;
  }
  nn::TensorGroups groups = {
      {"", model_->state_dict()},
      {"loss.discriminator.", loss_->discriminator().state_dict()},
      {"optimizer.generator.", stepper_->generator_optimizer().state_dict()},
      {"optimizer.discriminator.", stepper_->discriminator_optimizer().state_dict()}};
  const Tensor pending_inputs = model_->quantizer().maintenance_inputs();
  if (maintenance_pending_ && pending_inputs.defined())
    groups.push_back({kPendingMaintenancePrefix, {{"inputs", pending_inputs}}});
  nn::save_checkpoint(paths(".last.safetensors"), groups, state);
}

// Writes <name>.last.safetensors unless the weights went non-finite: a diverged run must not
// replace the last good checkpoint (the divergence error names it). Returns whether it saved.
bool Run::save_latest() {
  if (!nn::all_finite(model_->parameters()) ||
      !nn::all_finite(loss_->discriminator().parameters())) {
    std::fprintf(stderr, "\nwarning: the weights are not finite; %s was left as it was\n",
                 paths(".last.safetensors").c_str());
    return false;
  }
  save(false);
  return true;
}

// Validation, samples, the best checkpoint and early stopping: all measure the codebook as the
// epoch's training left it (the maintenance preparing the next epoch runs after them).
void Run::evaluate_epoch(int64_t epoch, bool complete) {
  last_val_ = validate();
  const auto& s = last_val_.stats;
  std::printf(
      "  validation: L1 %.4f, PSNR %.2f dB, utilisation %.1f%% (%lld of %lld codes), normalised "
      "entropy %.3f, "
      "perplexity %.1f on %lld images\n",
      last_val_.l1, last_val_.psnr, 100 * s.batch_utilization, static_cast<long long>(s.used_codes),
      static_cast<long long>(s.num_codes), s.batch_norm_entropy, s.perplexity,
      static_cast<long long>(last_val_.images));
  metrics_->write(json({{"step", step_},
                        {"epoch", epoch + 1},
                        {"val_l1", last_val_.l1},
                        {"val_psnr", last_val_.psnr},
                        {"val_utilization", s.batch_utilization},
                        {"val_norm_entropy", s.batch_norm_entropy},
                        {"val_perplexity", s.perplexity},
                        {"val_used_codes", s.used_codes}})
                      .dump());
  save_samples(epoch);
  if (last_val_.l1 < best_val_loss_) {
    best_val_loss_ = last_val_.l1;
    epochs_without_improvement_ = 0;
    save(true);
  } else if (complete) {  // a partial epoch (--max_steps) is validated again when resumed
    ++epochs_without_improvement_;
  }
  if (complete && t_.early_stopping_patience > 0 &&
      epochs_without_improvement_ >= t_.early_stopping_patience) {
    std::printf("  early stopping: no validation improvement for %lld epochs\n",
                static_cast<long long>(epochs_without_improvement_));
    early_stopped_ = true;
  }
}

bool Run::continues() const {
  return epoch_ < t_.epochs && step_ < total_steps_ && !early_stopped_;
}

// The epoch-end codebook maintenance (restarts, low-usage resets, expansion) prepares the next
// epoch, keyed to the step that starts it. It runs after the epoch was measured and saved as
// best, and only when another epoch follows, so nothing measured or kept as the final model has
// codes the decoder never trained on.
void Run::run_maintenance() {
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

TrainSummary Run::go() {
  log_setup();
  const auto start = Clock::now();
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
        if (step_ % t_.log_every == 0) {
          metrics_->write(last_metrics_.dump());
          interval_start_ = Clock::now();
          interval_images_ = 0;
        }
        bar.update(
            step_ - epoch_ * steps_per_epoch_,
            fmt::format("loss {:.4f}  L1 {:.4f}  util {:.1f}%  H {:.3f}  {:.1f} img/s",
                        last_metrics_["loss"].get<double>(), last_metrics_["l1"].get<double>(),
                        100 * last_metrics_["batch_utilization"].get<double>(),
                        last_metrics_["batch_norm_entropy"].get<double>(), rate));
      }
      // A stop on an epoch's last step lets the epoch end (resets, validation, save) first.
      if (g_stop_requested && step_ < epoch_end) {
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
    save_latest();
    interval_start_ = Clock::now();  // the rate shown next excludes validation and saving
    interval_images_ = 0;
    if (g_stop_requested) {
      interrupted = true;
      break;
    }
  }
  if (interrupted) {
    if (mid_epoch) save_latest();  // an epoch end has just saved
    std::printf("\ninterrupted at step %lld (continue with --resume %s)\n",
                static_cast<long long>(step_), paths(".last.safetensors").c_str());
  }
  TrainSummary summary;
  summary.interrupted = interrupted;
  summary.json = summary_json(interrupted, seconds_since(start));
  nn::write_file_atomically(paths(".summary.json"),
                            [&](std::ostream& out) { out << summary.json << "\n"; });
  return summary;
}

std::string Run::summary_json(bool interrupted, double seconds) const {
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
      {"best_val_loss", std::isfinite(best_val_loss_) ? json(best_val_loss_) : json()},
      {"val_l1", val(last_val_.l1)},
      {"val_psnr", val(last_val_.psnr)},
      {"val_utilization", val(s.batch_utilization)},
      {"val_used_codes", val(s.used_codes)},
      {"val_norm_entropy", val(s.batch_norm_entropy)},
      {"val_perplexity", val(s.perplexity)},
      {"num_codes", model_->quantizer().num_codes()},
      {"active_codes_ema", s.active_codes_ema},
      {"dead_codes_ema", s.dead_codes},
      {"nonfinite_steps_skipped", generator_skipped_},
      {"discriminator_updates_skipped", discriminator_skipped_},
      {"last_maintenance", maintenance_epoch_ > 0 ? json({{"after_epoch", maintenance_epoch_},
                                                          {"codes_touched", maintenance_codes_}})
                                                  : json()},
      {"unreadable_images_skipped", train_loader_->bad_images()},
      {"val_unreadable_images_skipped", val(last_val_.unreadable)},
      {"perceptual", loss_->perceptual_description()},
      {"device", device_.str()},
      {"threads", get_num_threads()},
      {"codebook_events", epoch_notes_},
      {"best_model", paths(".safetensors")},
      {"last_checkpoint", paths(".last.safetensors")},
      {"metrics", paths(".metrics.jsonl")}};
  return j.dump(2);
}

}  // namespace

void request_stop() { g_stop_requested = true; }

TrainSummary train(const TrainConfig& config, const std::string& resume_path) {
  g_stop_requested = false;
  Run run(config, resume_path);
  return run.go();
}

}  // namespace vq::train
