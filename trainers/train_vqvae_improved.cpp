// train_vqvae_improved: trains a VQGAN tokenizer without codebook collapse (the seed's program).
// With no arguments it trains the `fmnist` model with the `improved` preset on Fashion-MNIST:
// a run sized to finish in minutes on a 2-core CPU. See --help and README.md.
#include <csignal>
#include <cstdio>

#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "nn/checkpoint.h"
#include "nn/dist/communicator.h"
#include "nn/file_io.h"
#include "trainers/config.h"
#include "trainers/flags.h"
#include "trainers/model_io.h"
#include "trainers/trainer.h"

namespace {

void on_signal(int) {
  vq::train::request_stop();
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C stops at once
}

// A failing rank of a data-parallel job stops every rank (they would wait for it forever).
int fail(const std::string& message) {
  if (vq::dist::distributed()) vq::dist::world().abort(message);
  std::fprintf(stderr, "%s\n", message.c_str());
  return 1;
}

int run(int argc, char** argv) {
  using namespace vq;
  using namespace vq::train;
  // Flag values start at the defaults of the preset and model config that argv names (so --help
  // shows those); only flags given on the command line override the preset (or the resumed
  // run's config).
  std::string preset = Flags::peek(argc, argv, "preset", "improved"),
              model_config = Flags::peek(argc, argv, "model_config", "fmnist"), config_file, resume;
  const TrainConfig d = preset_config(preset, model_config);
  TrainingConfig t = d.training;
  models::QuantizerConfig q = d.quantizer;
  std::string perceptual = d.loss.perceptual_weights;
  bool print_config = false;
  int64_t image_size = d.model.resolution, in_channels = d.model.in_channels,
          out_channels = d.model.out_channels;
  int64_t disc_start = d.loss.disc_start;
  double perceptual_weight = d.loss.perceptual_weight;

  Flags flags("train_vqvae_improved",
              "Trains a VQGAN tokenizer (encoder, codebook, decoder, PatchGAN) and monitors "
              "codebook health.\n"
              "With no flags: the fmnist model, improved preset, Fashion-MNIST, 5 epochs x 50 "
              "steps of 64 images.");
  flags.add_string("train_dir", &t.train_dir,
                   "training images: a folder (recursive) or fashion-mnist[:train|:test]");
  flags.add_string("val_dir", &t.val_dir,
                   "validation images: a folder or fashion-mnist[:test|:train]; by default "
                   "Fashion-MNIST's test split when training on it, else 2% of --train_dir held "
                   "out (the same images in every run)");
  flags.add_int("image_size", &image_size, "training resolution (the model config's by default)",
                8);
  flags.add_int("in_channels", &in_channels, "1 (grey) or 3 (RGB)", 1);
  flags.add_int("out_channels", &out_channels, "must equal --in_channels (which sets both)", 1);
  flags.add_string("model_dir", &t.model_dir, "where checkpoints, metrics and the summary go");
  flags.add_string("model_name", &t.model_name,
                   "file name stem of the outputs (default: vqgan_<preset>)");
  flags.add_string("sample_dir", &t.sample_dir,
                   "where sample grids go (epoch_NNNN.png); default: <model_dir>/samples");
  flags.add_int("epochs", &t.epochs, "epochs to train", 1);
  flags.add_int("steps_per_epoch", &t.steps_per_epoch,
                "steps per epoch; 0 = one full pass over the training images", 0);
  flags.add_int("max_steps", &t.max_steps, "stop after this many steps in total; 0 = no limit", 0);
  flags.add_int("early_stopping_patience", &t.early_stopping_patience,
                "epochs without validation improvement before stopping; 0 = never", 0);
  flags.add_string("best_metric", &t.best_metric,
                   "validation number that picks the best model and drives early stopping: l1, "
                   "stlpips_vgg or stlpips_alex (for runs with the adversarial/perceptual terms)");
  flags.add_string("device", &t.device, "cpu, cuda or cuda:N");
  flags.add_bool(
      "use_amp", &t.use_amp,
      "mixed precision: convolutions multiply in --amp_dtype with float32 accumulation, "
      "everything else stays float32 (CPU: needs AVX512_BF16, else float32 with a note)");
  flags.add_string("amp_dtype", &t.amp_dtype,
                   "bf16 (CPU and CUDA) or fp16 (CUDA; refused on the CPU)");
  flags.add_bool("deterministic", &t.deterministic,
                 "CUDA: reproducible runs (sums in a fixed order instead of atomics, deterministic "
                 "cuDNN algorithms; slower), so --resume continues bit for bit; the CPU is "
                 "deterministic anyway");
  flags.add_string("preset", &preset,
                   "improved (the seed's fixes), original (the collapsing setup) or best (a large "
                   "codebook kept alive, beyond the seed)");
  flags.add_string("model_config", &model_config,
                   "fmnist (32x32 grey, 8x8 latents) or seed256 (256x256 RGB, 16x16)");
  flags.add_string(
      "config", &config_file,
      "JSON file overriding any preset value ({\"quantizer\": {\"n_embed\": 32}, ...})");
  flags.add_int("batch_size", &t.batch_size, "images per step", 1);
  flags.add_double("lr", &t.lr, "learning rate (Adam, betas 0.5/0.9)", 0);
  flags.add_string("lr_schedule", &t.lr_schedule, "constant, warmup or cosine");
  flags.add_int("warmup_steps", &t.warmup_steps,
                "linear LR warm-up steps (warmup and cosine schedules)", 0);
  flags.add_double("grad_clip", &t.grad_clip, "clip the generator's gradient norm; 0 = off", 0);
  flags.add_int("seed", reinterpret_cast<int64_t*>(&t.seed),
                "random seed (data order, flips, codebook sampling, init)", 0);
  flags.add_int("num_threads", &t.num_threads, "CPU threads; 0 = all cores", 0);
  flags.add_int("loader_threads", &t.loader_threads, "image decoding threads", 1);
  flags.add_int("val_limit", &t.val_limit, "validation images per epoch; 0 = all", 0);
  flags.add_int("val_stlpips_images", &t.val_stlpips_images,
                "validation images that also get ST-LPIPS (~25 ms each at 28x28 on 2 cores); "
                "0 = none, -1 = all",
                -1);
  flags.add_int("num_samples", &t.num_samples, "images in each sample grid", 1);
  flags.add_bool("random_crop", &t.random_crop,
                 "crop training images from a folder at a random place after resizing their short "
                 "side (taming's augmentation; --random_crop=false: the centre)");
  flags.add_int("min_image_size", &t.min_image_size,
                "skip images whose short side is below this instead of upscaling them (0: "
                "upscale any; the run reports how many it upscaled)",
                0);
  flags.add_int("log_every", &t.log_every, "steps between metrics log lines", 1);
  flags.add_string("resume", &resume,
                   "continue the run saved in this .last.safetensors checkpoint");
  flags.add_bool("print_config", &print_config,
                 "print the effective configuration (preset, --config file and flags merged) as "
                 "the JSON that --config reads, and exit without training");
  flags.add_string("perceptual_weights", &perceptual,
                   "perceptual net weights: stlpips-vgg (ST-LPIPS VGG16, installed by setup), "
                   "stlpips-alex, lpips-vgg (standard LPIPS VGG16, made from your VGG16 weights by "
                   "scripts/convert_lpips.py), a safetensors file, 'random', or empty (off)");
  flags.add_double("perceptual_weight", &perceptual_weight, "weight of the perceptual term", 0);
  flags.add_int("disc_start", &disc_start, "generator steps before the discriminator starts", 0);
  flags.add_int("n_embed", &q.n_embed, "codebook size K", 2);
  flags.add_double("temperature", &q.temperature, "training sampling temperature; 0 = argmin", 0);
  flags.add_double("ema_decay", &q.ema_decay, "EMA decay of the codebook statistics", 0);
  flags.add_double("entropy_weight", &q.entropy_weight, "weight of the entropy regulariser", 0);
  flags.add_double("beta", &q.beta, "commitment loss weight", 0);

  // The autocast policy, from the table the ops use (autograd/autocast.h).
  std::string policy = "--use_amp computes these ops in --amp_dtype (float32 accumulation):";
  const std::string table = autocast_policy();
  for (std::string_view rest = table; !rest.empty();) {
    const size_t end = std::min(rest.find('\n'), rest.size());
    policy += fmt::format("\n  {}", rest.substr(0, end));
    rest.remove_prefix(std::min(end + 1, rest.size()));
  }
  flags.set_epilogue(policy);

  try {
    if (!flags.parse(argc, argv)) return 0;
    TrainConfig config;
    if (!resume.empty()) {
      config = config_of(nn::load_checkpoint(resume), resume);
    } else {
      config = preset_config(preset, model_config);
    }
    if (!config_file.empty())
      config.merge_json(nn::read_file(config_file, 1 << 20, "--config file"), config_file);
    // Explicit flags win over the preset and the config file.
    TrainingConfig& c = config.training;
    for (const auto& [name, apply] : std::vector<std::pair<std::string, std::function<void()>>>{
             {"train_dir", [&] { c.train_dir = t.train_dir; }},
             {"val_dir", [&] { c.val_dir = t.val_dir; }},
             {"image_size", [&] { config.model.resolution = image_size; }},
             // The model reconstructs its input: --in_channels sets both counts unless
             // --out_channels is given too (then they must match; the config says so).
             {"in_channels",
              [&] {
                config.model.in_channels = in_channels;
                if (!flags.was_set("out_channels")) config.model.out_channels = in_channels;
              }},
             {"out_channels", [&] { config.model.out_channels = out_channels; }},
             {"model_dir", [&] { c.model_dir = t.model_dir; }},
             {"model_name", [&] { c.model_name = t.model_name; }},
             {"sample_dir", [&] { c.sample_dir = t.sample_dir; }},
             {"epochs", [&] { c.epochs = t.epochs; }},
             {"steps_per_epoch", [&] { c.steps_per_epoch = t.steps_per_epoch; }},
             {"max_steps", [&] { c.max_steps = t.max_steps; }},
             {"early_stopping_patience",
              [&] { c.early_stopping_patience = t.early_stopping_patience; }},
             {"best_metric", [&] { c.best_metric = t.best_metric; }},
             {"device", [&] { c.device = t.device; }},
             {"use_amp", [&] { c.use_amp = t.use_amp; }},
             {"amp_dtype", [&] { c.amp_dtype = t.amp_dtype; }},
             {"deterministic", [&] { c.deterministic = t.deterministic; }},
             {"batch_size", [&] { c.batch_size = t.batch_size; }},
             {"lr", [&] { c.lr = t.lr; }},
             {"lr_schedule", [&] { c.lr_schedule = t.lr_schedule; }},
             {"warmup_steps", [&] { c.warmup_steps = t.warmup_steps; }},
             {"grad_clip", [&] { c.grad_clip = t.grad_clip; }},
             {"seed", [&] { c.seed = t.seed; }},
             {"num_threads", [&] { c.num_threads = t.num_threads; }},
             {"loader_threads", [&] { c.loader_threads = t.loader_threads; }},
             {"val_limit", [&] { c.val_limit = t.val_limit; }},
             {"val_stlpips_images", [&] { c.val_stlpips_images = t.val_stlpips_images; }},
             {"num_samples", [&] { c.num_samples = t.num_samples; }},
             {"random_crop", [&] { c.random_crop = t.random_crop; }},
             {"min_image_size", [&] { c.min_image_size = t.min_image_size; }},
             {"log_every", [&] { c.log_every = t.log_every; }},
             {"perceptual_weights", [&] { config.loss.perceptual_weights = perceptual; }},
             {"perceptual_weight", [&] { config.loss.perceptual_weight = perceptual_weight; }},
             {"disc_start", [&] { config.loss.disc_start = disc_start; }},
             {"n_embed", [&] { config.quantizer.n_embed = q.n_embed; }},
             {"temperature", [&] { config.quantizer.temperature = q.temperature; }},
             {"ema_decay", [&] { config.quantizer.ema_decay = q.ema_decay; }},
             {"entropy_weight", [&] { config.quantizer.entropy_weight = q.entropy_weight; }},
             {"beta", [&] { config.quantizer.beta = q.beta; }}}) {
      if (flags.was_set(name)) apply();
    }
    if (!resume.empty() && (flags.was_set("preset") || flags.was_set("model_config"))) {
      throw Error(
          "--preset and --model_config cannot change when resuming (the run's own config is used)");
    }
    if (resume.empty()) config.model.name_custom_if_changed();  // a resumed run keeps its name
    if (print_config) {
      config.validate();
      std::printf("%s\n", config.to_json().c_str());
      return 0;
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    const TrainSummary summary = vq::train::train(config, resume);
    std::printf("summary:\n%s\n", summary.json.c_str());
    return summary.interrupted ? 130 : 0;
  } catch (const Error& e) {
    return fail(fmt::format("train_vqvae_improved: error: {}", e.what()));
  } catch (const std::exception& e) {
    return fail(fmt::format("train_vqvae_improved: unexpected error: {}", e.what()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    // Under mpirun every rank runs this program; only rank 0 prints progress and writes files.
    vq::dist::WorldScope world(&argc, &argv);
    if (!vq::dist::world().is_root() && std::freopen("/dev/null", "w", stdout) == nullptr)
      return fail("cannot silence the standard output of a non-root rank");
    return run(argc, argv);
  } catch (const vq::Error& e) {
    return fail(fmt::format("train_vqvae_improved: error: {}", e.what()));
  }
}
