// The training loop's decisions, each checked on tiny runs: what validation and the saved models
// measure (the codebook as training left it, before the epoch-end maintenance), when that
// maintenance runs, early stopping, the best checkpoint, the LR and commitment values used per
// step, non-finite steps, resume refusals and the metrics log after a resume, and a real SIGINT.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>
#include <thread>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/checkpoint.h"
#include "test_util.h"
#include "trainer_fixture.h"
#include "trainers/data/dataset.h"
#include "trainers/data/loader.h"
#include "trainers/model_io.h"
#include "trainers/train_step.h"
#include "trainers/trainer.h"

namespace vq::train {
namespace {

using nlohmann::json;
using test::allclose;

using TrainingLoop = test::TinyImages;

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

std::vector<json> step_lines(const std::vector<json>& lines) {
  std::vector<json> out;
  for (const auto& j : lines) {
    if (!j.contains("val_l1")) out.push_back(j);
  }
  return out;
}

std::vector<json> validation_lines(const std::vector<json>& lines) {
  std::vector<json> out;
  for (const auto& j : lines) {
    if (j.contains("val_l1")) out.push_back(j);
  }
  return out;
}

void expect_same_weights(const nn::NamedTensors& a, const nn::NamedTensors& b, double tol = 0) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(allclose(a[i].second, b[i].second, tol, tol)) << a[i].first;
  }
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Validation L1 of a model over the run's validation images, computed here independently.
double validation_l1(models::VQModel& model, const TrainConfig& c) {
  NoGradGuard no_grad;
  model.eval();
  DataLoader loader(open_dataset(c.training.val_dir, 1, c.model.resolution), 1, c.model.resolution,
                    LoaderOptions::single_pass(c.training.batch_size, c.training.val_limit));
  double sum = 0;
  int64_t n = 0;
  while (auto batch = loader.next()) {
    sum += l1_loss(model.forward(batch->images).reconstruction, batch->images).item() *
           batch->images.size(0);
    n += batch->images.size(0);
  }
  return sum / n;
}

// One epoch of the improved preset would end with a 30% low-usage reset; as the run's last epoch
// it must not: the saved models are exactly what the steps trained, replayed here with
// TrainStep, and the validation line measures that model.
TEST_F(TrainingLoop, FinalModelIsTheCodebookTrainingLeft) {
  const std::string out = test::temp_path("loop_final");
  TrainConfig c = test::tiny_config(images_, out);
  c.training.epochs = 1;
  ASSERT_EQ(c.quantizer.low_usage_reset_interval, 1);
  const auto summary = json::parse(train(c, "").json);
  EXPECT_TRUE(summary.at("codebook_events").empty()) << summary.dump(2);
  EXPECT_TRUE(summary.at("last_maintenance").is_null());

  TrainStep replay(c, kCPU);
  LoaderOptions lo;
  lo.batch_size = c.training.batch_size;
  lo.flip = true;
  lo.seed = c.training.seed;
  DataLoader loader(open_dataset(images_, 1, 16), 1, 16, lo);
  for (int64_t step = 0; step < 3; ++step) {
    const double commitment = std::min(1.0, step / 3.0 / c.quantizer.commitment_warmup_epochs);
    ASSERT_FALSE(
        replay.run(loader.next()->images, step, commitment, c.training.lr).generator_skipped);
  }
  const auto best = load_model(out + "/tiny.safetensors", kCPU);
  const auto last = load_model(out + "/tiny.last.safetensors", kCPU);
  expect_same_weights(best.model->state_dict(), replay.model().state_dict());
  expect_same_weights(last.model->state_dict(), replay.model().state_dict());
  EXPECT_TRUE(last.checkpoint.state.maintenance_pending);
  const auto val = validation_lines(read_jsonl(out + "/tiny.metrics.jsonl"));
  ASSERT_EQ(val.size(), 1u);
  EXPECT_NEAR(val[0].at("val_l1").get<double>(), validation_l1(replay.model(), c), 1e-6);
}

// Resets every 2nd epoch run after epochs 2 and 4 of 5, never after the last; the summary names
// what the last one touched.
TEST_F(TrainingLoop, EpochEndMaintenanceRunsAtTheConfiguredEpochsOnly) {
  TrainConfig c = test::tiny_config(images_, test::temp_path("loop_resets"));
  c.training.epochs = 5;
  c.training.steps_per_epoch = 2;
  c.quantizer.low_usage_reset_interval = 2;
  c.quantizer.dead_code_reset = "off";
  const auto summary = json::parse(train(c, "").json);
  EXPECT_EQ(summary.at("codebook_events"), json({"after epoch 2: reset the 4 least-used codes",
                                                 "after epoch 4: reset the 4 least-used codes"}));
  EXPECT_EQ(summary.at("last_maintenance"), json({{"after_epoch", 4}, {"codes_touched", 4}}));
}

// With a vanishing learning rate and a learned codebook nothing changes, so no epoch after the
// first improves: patience 2 stops after epoch 3, with nothing run for a next epoch.
TEST_F(TrainingLoop, EarlyStoppingAfterPatienceEpochsWithoutImprovement) {
  const std::string out = test::temp_path("loop_early");
  TrainConfig c = test::tiny_config(images_, out);
  c.training.epochs = 10;
  c.training.lr = 1e-30;
  c.training.early_stopping_patience = 2;
  c.quantizer.codebook = "learned";
  c.quantizer.dead_code_reset = "off";
  c.quantizer.low_usage_reset_interval = 0;
  const auto summary = json::parse(train(c, "").json);
  EXPECT_TRUE(summary.at("early_stopped").get<bool>());
  EXPECT_EQ(summary.at("epochs_completed"), 3);
  EXPECT_EQ(summary.at("steps"), 9);
  const auto val = validation_lines(read_jsonl(out + "/tiny.metrics.jsonl"));
  ASSERT_EQ(val.size(), 3u);
  EXPECT_EQ(val[1].at("val_l1"), val[0].at("val_l1"));
  const auto best = nn::load_checkpoint(out + "/tiny.safetensors");
  EXPECT_EQ(best.state.step, 3);  // the first epoch's model: the later ones did not improve
  // Nothing was prepared for an epoch that never came, and resuming does not train on.
  EXPECT_TRUE(nn::load_checkpoint(out + "/tiny.last.safetensors").state.maintenance_pending);
  const auto resumed = json::parse(train(c, out + "/tiny.last.safetensors").json);
  EXPECT_EQ(resumed.at("steps"), 9);
  EXPECT_TRUE(resumed.at("early_stopped").get<bool>());
}

// The best file holds the epoch with the lowest validation L1, as that epoch's training left it:
// a run stopped at that epoch ends with the same weights.
TEST_F(TrainingLoop, BestCheckpointIsTheLowestValidationLoss) {
  const std::string out = test::temp_path("loop_best");
  TrainConfig c = test::tiny_config(images_, out);
  c.training.epochs = 4;
  c.training.lr = 3e-3;
  train(c, "");
  const auto val = validation_lines(read_jsonl(out + "/tiny.metrics.jsonl"));
  ASSERT_EQ(val.size(), 4u);
  size_t best_epoch = 0;
  for (size_t e = 1; e < val.size(); ++e) {
    if (val[e].at("val_l1").get<double>() < val[best_epoch].at("val_l1").get<double>())
      best_epoch = e;
  }
  const auto best = load_model(out + "/tiny.safetensors", kCPU);
  EXPECT_EQ(best.checkpoint.state.step, 3 * static_cast<int64_t>(best_epoch + 1));
  EXPECT_NEAR(validation_l1(*best.model, c), val[best_epoch].at("val_l1").get<double>(), 1e-6);
  const std::string shorter = test::temp_path("loop_best_shorter");
  TrainConfig c2 = test::tiny_config(images_, shorter);
  c2.training.epochs = static_cast<int64_t>(best_epoch + 1);
  c2.training.lr = c.training.lr;
  train(c2, "");
  expect_same_weights(best.model->state_dict(),
                      load_model(shorter + "/tiny.last.safetensors", kCPU).model->state_dict());
}

// The metrics log shows the LR and commitment scale each step really used: linear warm-up over 2
// steps, then cosine decay toward min_lr over the remaining 4 of 6, and beta ramping over one
// epoch of 3 steps.
TEST_F(TrainingLoop, LogsTheLrScheduleAndCommitmentWarmupUsedPerStep) {
  const std::string out = test::temp_path("loop_schedule");
  TrainConfig c = test::tiny_config(images_, out);
  c.training.lr_schedule = "cosine";
  c.training.warmup_steps = 2;
  c.training.min_lr = 1e-4;
  c.quantizer.commitment_warmup_epochs = 1;
  train(c, "");
  const auto lines = step_lines(read_jsonl(out + "/tiny.metrics.jsonl"));
  ASSERT_EQ(lines.size(), 6u);
  const double base = c.training.lr, lo = 1e-4;
  const std::vector<double> lr = {base / 2,
                                  base,
                                  base,
                                  lo + (base - lo) * (1 + std::cos(std::numbers::pi / 4)) / 2,
                                  lo + (base - lo) / 2,
                                  lo + (base - lo) * (1 + std::cos(3 * std::numbers::pi / 4)) / 2};
  const std::vector<double> commitment = {0, 1 / 3.0, 2 / 3.0, 1, 1, 1};
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].at("step"), i + 1);
    EXPECT_NEAR(lines[i].at("lr").get<double>(), lr[i], 1e-12) << "step " << i + 1;
    EXPECT_NEAR(lines[i].at("commitment_scale").get<double>(), commitment[i], 1e-12)
        << "step " << i + 1;
  }
}

// A diverging continuation skips its non-finite steps, refuses to save its bad weights at the
// epoch end, stops, and leaves the last good checkpoint exactly as it was.
TEST_F(TrainingLoop, NonFiniteStepsAreSkippedAndTheLastGoodCheckpointSurvives) {
  const std::string out = test::temp_path("loop_nonfinite");
  TrainConfig c = test::tiny_config(images_, out);
  c.training.epochs = 1;
  train(c, "");
  const std::string last = out + "/tiny.last.safetensors", before = file_bytes(last);
  TrainConfig diverging = c;
  diverging.training.epochs = 3;
  diverging.training.lr = 1e39;  // infinite in float32: step 4's update makes the weights inf/NaN
  diverging.training.max_nonfinite_steps = 5;
  EXPECT_VQ_ERROR(train(diverging, last), "5 consecutive steps with a non-finite loss");
  EXPECT_EQ(file_bytes(last), before);
  EXPECT_EQ(load_model(last, kCPU).checkpoint.state.step, 3);
  // Step 4 had finite gradients and was applied; steps 5 to 9 were skipped, so never logged. The
  // end of epoch 2 (step 6) came and went without saving.
  const auto lines = read_jsonl(out + "/tiny.metrics.jsonl");
  ASSERT_FALSE(step_lines(lines).empty());
  EXPECT_EQ(step_lines(lines).back().at("step"), 4);
  EXPECT_EQ(validation_lines(lines).back().at("step"), 6);
}

// A non-finite discriminator loss (here: its weights went NaN after the generator's pass of the
// step) skips the discriminator's update only; the generator steps, and the result says so.
TEST_F(TrainingLoop, NonFiniteDiscriminatorSkipsOnlyItsUpdate) {
  TrainConfig c = test::tiny_config(images_, test::temp_path("loop_disc"));
  c.loss.disc_start = 0;
  TrainStep stepper(c, kCPU);
  const Tensor bias_before = stepper.model().state_dict()[1].second.clone();
  DataLoader loader(open_dataset(images_, 1, 16), 1, 16, LoaderOptions::single_pass(4));
  const Tensor x = loader.next()->images;
  stepper.generator_pass(x, 0, 1.0, 1e-3);
  {
    NoGradGuard no_grad;
    for (auto& p : stepper.loss().discriminator().parameters()) p.fill_(std::nan(""));
  }
  stepper.discriminator_pass(x, 0);
  const TrainStep::Result r = stepper.finish();
  ASSERT_FALSE(r.generator_skipped);
  EXPECT_TRUE(r.discriminator_skipped);
  EXPECT_EQ(r.nonfinite,
            "the discriminator loss (nan); the generator stepped, the discriminator did not");
  EXPECT_FALSE(allclose(stepper.model().state_dict()[1].second, bias_before));
  EXPECT_TRUE(stepper.discriminator_optimizer().state_dict().empty());  // Adam never stepped
}

// Dynamic loss scaling in the training step (float16 needs it; here it runs in float32 on the
// CPU). A scale too large for float32 makes the scaled loss and every gradient overflow, as a
// too-large scale does in float16: the step updates nothing and the scale halves. A sane scale
// then trains.
TEST_F(TrainingLoop, LossScalingSkipsOverflowsAndLowersTheScale) {
  TrainConfig c = test::tiny_config(images_, test::temp_path("loop_scaler"));
  c.loss.disc_start = 0;
  TrainStep stepper(c, kCPU, DType::Float32, /*loss_scaling=*/true);
  ASSERT_NE(stepper.generator_scaler(), nullptr);
  EXPECT_EQ(stepper.generator_scaler()->scale(), 65536);
  const Tensor bias_before = stepper.model().state_dict()[1].second.clone();
  DataLoader loader(open_dataset(images_, 1, 16), 1, 16, LoaderOptions::single_pass(4));
  const Tensor x = loader.next()->images;
  const auto set_scales = [&](double scale) {
    for (nn::LossScaler* s : {stepper.generator_scaler(), stepper.discriminator_scaler()})
      s->load_state_dict({{"scale", full({}, scale, DType::Float64)},
                          {"growth_tracker", full({}, 0.0, DType::Float64)}});
  };
  set_scales(1e300);
  TrainStep::Result r = stepper.run(x, 0, 1.0, 1e-3);
  EXPECT_TRUE(r.generator_skipped);
  EXPECT_TRUE(r.loss_scale_overflow);
  EXPECT_EQ(r.loss_scale, 5e299);
  EXPECT_EQ(r.nonfinite,
            "the gradients at loss scale 1e+300; the step was skipped and the scale lowered to "
            "5e+299");
  EXPECT_TRUE(allclose(stepper.model().state_dict()[1].second, bias_before, 0, 0));
  EXPECT_TRUE(stepper.generator_optimizer().state_dict().empty());
  set_scales(1024);
  r = stepper.run(x, 1, 1.0, 1e-3);
  EXPECT_FALSE(r.generator_skipped);
  EXPECT_FALSE(r.discriminator_skipped);
  EXPECT_EQ(r.loss_scale, 1024);
  EXPECT_EQ(stepper.generator_scaler()->growth_tracker(), 1);
  EXPECT_FALSE(allclose(stepper.model().state_dict()[1].second, bias_before));
  EXPECT_TRUE(std::isfinite(r.loss) && std::isfinite(r.d_loss));
}

TEST_F(TrainingLoop, ResumeRefusesChangesThatAlterTheRun) {
  const std::string out = test::temp_path("loop_refuse");
  TrainConfig c = test::tiny_config(images_, out);
  c.training.epochs = 1;
  c.training.lr_schedule = "cosine";
  train(c, "");
  const std::string last = out + "/tiny.last.safetensors";
  TrainConfig other = c;
  other.training.seed = 7;
  EXPECT_VQ_ERROR(train(other, last), "--resume: --seed 7 differs from the checkpoint's seed 42");
  other = c;
  other.training.batch_size = 8;
  EXPECT_VQ_ERROR(train(other, last),
                  "--resume: --batch_size 8 differs from the checkpoint's batch size 4");
  other = c;
  other.training.epochs = 2;
  EXPECT_VQ_ERROR(train(other, last),
                  "the cosine LR schedule was planned for 3 steps and would now last 6");
  other = c;
  other.training.lr_schedule = "constant";
  EXPECT_VQ_ERROR(train(other, last),
                  "--lr_schedule constant differs from the checkpoint's schedule cosine");
  // The best file has no optimizer state: the error names the file to resume from.
  EXPECT_VQ_ERROR(train(c, out + "/tiny.safetensors"),
                  "is a best-model file (the model only: no discriminator or optimizer state); "
                  "resume from " +
                      last);
  // A checkpoint of the earlier format (other random streams) cannot continue exactly.
  const auto loaded = nn::load_checkpoint(last);
  nn::TrainingState old_state = loaded.state;
  old_state.version = 1;
  nn::save_checkpoint(out + "/old.last.safetensors", {{"", loaded.file.tensors}}, old_state);
  EXPECT_VQ_ERROR(
      train(c, out + "/old.last.safetensors"),
      "was written by an earlier vqgan.cpp (training state version 1, this one writes 2)");
}

// A run stopped mid-epoch by --max_steps and resumed ends as the uninterrupted run: the partial
// epoch's validation is reported but moves neither the best model nor early stopping.
TEST_F(TrainingLoop, ResumeFromAMidEpochStopIsExact) {
  const std::string straight = test::temp_path("loop_mid_straight"),
                    split = test::temp_path("loop_mid_split");
  TrainConfig c = test::tiny_config(images_, straight);
  c.training.epochs = 3;
  train(c, "");
  TrainConfig first = test::tiny_config(images_, split);
  first.training.epochs = 3;
  first.training.max_steps = 5;
  train(first, "");
  TrainConfig rest = first;
  rest.training.max_steps = 0;
  train(rest, split + "/tiny.last.safetensors");
  for (const char* file : {"/tiny.last.safetensors", "/tiny.safetensors"}) {
    const auto a = load_model(straight + file, kCPU), b = load_model(split + file, kCPU);
    EXPECT_EQ(a.checkpoint.state.step, b.checkpoint.state.step) << file;
    expect_same_weights(a.model->state_dict(), b.model->state_dict(), 1e-6);
  }
  const auto val = validation_lines(read_jsonl(split + "/tiny.metrics.jsonl"));
  ASSERT_EQ(val.size(), 4u);  // epochs 1, 2 (partial, at step 5), 2, 3
  EXPECT_TRUE(val[1].value("partial_epoch", false));
}

// After a hard kill the log holds lines written after the last checkpoint (and maybe a torn
// line); the resumed run drops them, so the log ends with one line per step.
TEST_F(TrainingLoop, ResumeDropsMetricsLoggedAfterTheCheckpoint) {
  const std::string out = test::temp_path("loop_metrics");
  TrainConfig c = test::tiny_config(images_, out);
  c.training.epochs = 1;
  train(c, "");
  {
    std::ofstream log(out + "/tiny.metrics.jsonl", std::ios::app);
    log << R"({"step": 4, "loss": 1.0})"
        << "\n"
        << R"({"step": 5, "lo)";
  }
  c.training.epochs = 2;
  train(c, out + "/tiny.last.safetensors");
  const auto lines = read_jsonl(out + "/tiny.metrics.jsonl");
  const auto steps = step_lines(lines);
  ASSERT_EQ(steps.size(), 6u);
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i].at("step"), i + 1);
  EXPECT_EQ(validation_lines(lines).size(), 2u);
}

// Ctrl-C on the real program: it finishes the step, saves a loadable checkpoint and exits 130.
TEST_F(TrainingLoop, SigintToTheProgramSavesAndExits130) {
  const std::string out = test::temp_path("loop_sigint");
  TrainConfig c = test::tiny_config(images_, out);
  c.training.epochs = 1000;
  std::ofstream(out + "/config.json") << c.to_json();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string log = out + "/stdout.txt";
    freopen(log.c_str(), "w", stdout);
    freopen(log.c_str(), "a", stderr);
    execl(VQ_TRAIN_PROGRAM, VQ_TRAIN_PROGRAM, "--config", (out + "/config.json").c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  bool started = false;
  for (int i = 0; i < 1200 && !started; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream m(out + "/tiny.metrics.jsonl");
    std::string line;
    started = static_cast<bool>(std::getline(m, line));
  }
  EXPECT_TRUE(started);
  kill(pid, SIGINT);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << file_bytes(out + "/stdout.txt");
  EXPECT_EQ(WEXITSTATUS(status), 130) << file_bytes(out + "/stdout.txt");
  const auto last = load_model(out + "/tiny.last.safetensors", kCPU);
  EXPECT_GT(last.checkpoint.state.step, 0);
  EXPECT_LT(last.checkpoint.state.step, 3000);
  EXPECT_NE(file_bytes(out + "/stdout.txt").find("interrupted at step"), std::string::npos);
}

}  // namespace
}  // namespace vq::train
