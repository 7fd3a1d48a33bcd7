// Building a training run: config checks, the model, data and schedule, resuming from a
// checkpoint (and refusing what would change the run's trajectory), and writing checkpoints.
#include <cstdio>
#include <filesystem>

#include "autograd/backend.h"
#include "autograd/ops.h"
#include "nn/file_io.h"
#include "nn/optim/optimizer.h"
#include "trainers/model_io.h"
#include "trainers/run.h"

#ifdef VQ_WITH_NCCL
#include "cuda/nccl_communicator.h"
#endif

namespace vq::train {

namespace {

// Where a best-model file's run keeps its resumable checkpoint: <name>.last.safetensors.
std::string last_checkpoint_beside(const std::string& path) {
  const std::string ext = ".safetensors";
  if (path.size() > ext.size() && path.ends_with(ext))
    return path.substr(0, path.size() - ext.size()) + ".last" + ext;
  return "the run's <name>.last.safetensors";
}

// The device this process trains on. Under data parallelism each rank of a machine takes its
// own GPU, the one of its local rank, chosen before anything creates a GPU context (so no rank
// leaves a context on GPU 0); the collectives on its tensors then run in NCCL.
Device device_of_this_rank(const std::string& text) {
  Device device = parse_device(text);
  if (!dist::distributed() || !device.is_cuda()) return device;
  VQ_CHECK(text.find(':') == std::string::npos,
           "--device {}: under mpirun each rank takes the GPU of its local rank; pass --device "
           "cuda (choose the GPUs with CUDA_VISIBLE_DEVICES)",
           text);
  const dist::Communicator& comm = dist::world();
  device.index = dist::gpu_for_local_rank(comm.local_rank(), comm.local_size(), gpu_count());
  backend_for(device);  // selects it
#ifdef VQ_WITH_NCCL
  dist::set_world(cuda::make_nccl_communicator(dist::shared_world(), device));
#else
  VQ_CHECK(false, "data-parallel training on {} needs NCCL, which this build lacks", text);
#endif
  return device;
}

}  // namespace

TrainingRun::TrainingRun(const TrainConfig& config, const std::string& resume_path)
    : config_(config), t_(config_.training), device_(device_of_this_rank(config.training.device)) {
  if (config_.training.sample_dir.empty()) {
    config_.training.sample_dir = (std::filesystem::path(t_.model_dir) / "samples").string();
  }
  nn::LoadedCheckpoint resume;
  if (!resume_path.empty()) {
    VQ_CHECK(std::filesystem::exists(resume_path), "--resume: '{}' does not exist", resume_path);
    resume = nn::load_checkpoint(resume_path);
    VQ_CHECK(resume.has_state,
             "--resume: '{}' has no training state (not a .last.safetensors checkpoint?)",
             resume_path);
    VQ_CHECK(!resume.group("loss.discriminator.").empty(),
             "--resume: '{}' is a best-model file (the model only: no discriminator or optimizer "
             "state); resume from {}",
             resume_path, last_checkpoint_beside(resume_path));
    VQ_CHECK(resume.state.version >= nn::kTrainingStateVersion,
             "--resume: '{}' was written by an earlier vqgan.cpp (training state version {}, this "
             "one writes {}): its random streams and epoch-end order differ, so the run cannot be "
             "continued exactly; start a new run (its weights still load with the tools)",
             resume_path, resume.state.version, nn::kTrainingStateVersion);
  }
  config_.validate();
  VQ_CHECK(t_.batch_size % comm().size() == 0,
           "--batch_size {} is the global batch: it must split evenly over the {} ranks",
           t_.batch_size, comm().size());
  if (!resume_path.empty()) check_config_fits_file(config_, resume, resume_path);
  precision_ = training_precision(t_, device_, &precision_note_);
  set_deterministic(t_.deterministic);
  // Ranks on one machine share its cores.
  set_num_threads(t_.num_threads > 0 ? static_cast<int>(t_.num_threads)
                                     : std::max(1, get_num_threads() / comm().local_size()));
  zeros({1}, DType::Float32, device_);  // fails now, with the reason, if the device cannot be used

  stepper_ = std::make_unique<TrainStep>(config_, device_, precision_);
  model_ = &stepper_->model();
  loss_ = &stepper_->loss();

  auto train_set = open_dataset(t_.train_dir, config_.model.in_channels, config_.model.resolution,
                                "train", t_.min_image_size);
  if (t_.val_dir.empty() && !is_fashion_mnist(t_.train_dir)) {
    // Your own images are validated on your own images, never on Fashion-MNIST.
    HeldOut split = hold_out(train_set);
    train_set = split.train;
    val_set_ = split.val;
  } else {
    val_set_ = open_dataset(t_.val_dir.empty() ? "fashion-mnist:test" : t_.val_dir,
                            config_.model.in_channels, config_.model.resolution, "test",
                            t_.min_image_size);
  }
  quality_ =
      std::make_unique<QualityMeter>(t_.val_stlpips_images, config_.model.resolution, device_);
  LoaderOptions lo;
  lo.batch_size = t_.batch_size;
  lo.shard = comm().rank();
  lo.shards = comm().size();
  lo.flip = true;
  lo.random_crop = t_.random_crop;
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
    // A float16 run continues with its loss scales; one resumed in float16 from a run that
    // trained in another precision starts the scalers afresh.
    for (const auto& [prefix, scaler] : loss_scalers()) {
      const nn::NamedTensors state = resume.group(prefix);
      if (!state.empty()) scaler->load_state_dict(state);
    }
    step_ = resume.state.step;
    epoch_ = resume.state.epoch;
    VQ_CHECK(epoch_ * steps_per_epoch_ <= step_ && step_ <= (epoch_ + 1) * steps_per_epoch_,
             "--resume: the checkpoint is at step {} in epoch {}, which does not fit {} steps per "
             "epoch; resume with the run's own --steps_per_epoch",
             step_, epoch_ + 1, steps_per_epoch_);
    best_val_loss_ = resume.state.best_val_loss;
    epochs_without_improvement_ = resume.state.epochs_without_improvement;
    early_stopped_ = patience_exhausted();  // an early-stopped run stays stopped
    maintenance_pending_ = resume.state.maintenance_pending;
    for (const auto& [name, t] : resume.group(kPendingMaintenancePrefix)) {
      if (name == "inputs") model_->quantizer().set_maintenance_inputs(t);
    }
    train_loader_->skip_to(step_);
    std::printf("resumed from %s at step %lld (epoch %lld)\n", resume_path.c_str(),
                static_cast<long long>(step_), static_cast<long long>(epoch_));
    const int64_t dropped =
        comm().is_root() ? truncate_jsonl_after_step(paths(".metrics.jsonl"), step_) : 0;
    if (dropped > 0) {
      std::printf(
          "  metrics: dropped %lld lines logged after step %lld (they will be logged "
          "again)\n",
          static_cast<long long>(dropped), static_cast<long long>(step_));
    }
  }
  VQ_CHECK(t_.best_metric == "l1" || quality_->measures_stlpips(),
           "--best_metric {} needs ST-LPIPS in validation ({})", t_.best_metric,
           quality_->stlpips_description());
  if (comm().is_root()) {
    metrics_ = std::make_unique<JsonlWriter>(paths(".metrics.jsonl"), !resume_path.empty());
    // The effective configuration beside the run's other files, in the format --config reads
    // (a resumed run rewrites it: flags such as --max_steps may have changed).
    nn::write_file_atomically(paths(".config.json"), config_.to_json() + "\n");
  }
  // Every rank built the same weights from the same seed (or file); rank 0's are made the
  // weights of all, so no rank can start from a different point.
  for (nn::Module* m : std::initializer_list<nn::Module*>{model_, &loss_->discriminator()}) {
    for (const auto& [name, t] : m->state_dict()) {
      if (is_floating(t.dtype())) comm().broadcast(t, 0);
    }
  }
}

// A resumed run must follow the trajectory the checkpoint started: the same data order, flips
// and sampling (--seed), the same position in the data (--batch_size), and for a cosine schedule
// the same length. Longer runs are fine where the schedule does not depend on the length.
void TrainingRun::check_resume_fits(const nn::LoadedCheckpoint& resume,
                                    const std::string& path) const {
  const TrainingConfig saved = config_of(resume, path).training;
  VQ_CHECK(t_.seed == saved.seed,
           "--resume: --seed {} differs from the checkpoint's seed {} (it decides the data order, "
           "flips and code sampling); resume without --seed",
           t_.seed, saved.seed);
  VQ_CHECK(t_.batch_size == saved.batch_size,
           "--resume: --batch_size {} differs from the checkpoint's batch size {} (the position "
           "in the data depends on it); resume without --batch_size",
           t_.batch_size, saved.batch_size);
  VQ_CHECK(t_.lr_schedule == saved.lr_schedule,
           "--resume: --lr_schedule {} differs from the checkpoint's schedule {}; resume without "
           "--lr_schedule",
           t_.lr_schedule, saved.lr_schedule);
  VQ_CHECK(t_.best_metric == saved.best_metric,
           "--resume: --best_metric {} differs from the checkpoint's {} (its best model so far was "
           "picked by that); resume without --best_metric",
           t_.best_metric, saved.best_metric);
  const int64_t planned = resume.state.total_steps;
  VQ_CHECK(schedule_.kind != nn::LrSchedule::Kind::Cosine || planned == total_steps_,
           "--resume: the cosine LR schedule was planned for {} steps and would now last {} "
           "(from --epochs, --max_steps and --steps_per_epoch); a cosine run cannot change its "
           "length: keep the run's values (runs you plan to extend are better started with "
           "--lr_schedule constant or warmup)",
           planned, total_steps_);
}

std::vector<std::pair<std::string, nn::LossScaler*>> TrainingRun::loss_scalers() const {
  if (stepper_->generator_scaler() == nullptr) return {};
  return {{"loss_scaler.generator.", stepper_->generator_scaler()},
          {"loss_scaler.discriminator.", stepper_->discriminator_scaler()}};
}

std::string TrainingRun::paths(const std::string& suffix) const {
  return (std::filesystem::path(t_.model_dir) / (t_.model_name + suffix)).string();
}

// Writes the best model (<name>.safetensors) or everything --resume needs
// (<name>.last.safetensors), unless a tensor it would write is not finite (weights, codebook
// statistics, the discriminator, optimizer moments): a diverged run must never replace a good
// file (the divergence error names the last one). Returns whether it saved.
bool TrainingRun::save(bool best) {
  if (!comm().is_root()) return true;  // every rank holds the same state; rank 0 writes it
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
  nn::TensorGroups groups = {{"", model_->state_dict()}};
  if (!best) {
    groups.push_back({"loss.discriminator.", loss_->discriminator().state_dict()});
    groups.push_back({"optimizer.generator.", stepper_->generator_optimizer().state_dict()});
    groups.push_back(
        {"optimizer.discriminator.", stepper_->discriminator_optimizer().state_dict()});
    for (const auto& [prefix, scaler] : loss_scalers())
      groups.push_back({prefix, scaler->state_dict()});
    const Tensor pending_inputs = model_->quantizer().maintenance_inputs();
    if (maintenance_pending_ && pending_inputs.defined())
      groups.push_back({kPendingMaintenancePrefix, {{"inputs", pending_inputs}}});
  }
  std::vector<Tensor> floating;
  for (const auto& [prefix, tensors] : groups) {
    for (const auto& [name, t] : tensors) {
      if (is_floating(t.dtype())) floating.push_back(t);
    }
  }
  const std::string path = paths(best ? ".safetensors" : ".last.safetensors");
  if (!nn::all_finite(floating)) {
    std::fprintf(stderr, "\nwarning: the training state is not finite; %s was left as it was\n",
                 path.c_str());
    return false;
  }
  nn::save_checkpoint(path, groups, state);
  return true;
}

}  // namespace vq::train
