// vq_pretrain_perceptual: makes usable perceptual-loss weights without the internet. Pretrained
// ImageNet VGG16 weights cannot be downloaded on our machines, so this trains the perceptual
// net's VGG16 feature stack from scratch as a Fashion-MNIST classifier (global average pool of
// the last slice + one linear layer), then saves the feature weights under LPIPS names with a
// note saying exactly how they were made. The LPIPS "lin" weights (learned from human
// judgements) have no offline substitute and stay uniform (1/C per channel).
#include <cstdio>
#include <filesystem>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "models/perceptual.h"
#include "nn/linear.h"
#include "nn/optim/optimizer.h"
#include "nn/safetensors.h"
#include "trainers/data/loader.h"
#include "trainers/flags.h"
#include "trainers/progress.h"

namespace {

using namespace vq;

// Logits [N, 10] from the feature net's last slice.
Tensor classify(models::PerceptualLoss& net, nn::Linear& head, const Tensor& x) {
  const Tensor features = net.features(x).back();  // [N, 512, h, w]
  return head.forward(mean(features, {2, 3}));
}

Tensor labels_for(const std::vector<int64_t>& indices, const std::vector<uint8_t>& labels) {
  std::vector<int64_t> out;
  for (int64_t i : indices) out.push_back(labels[i]);
  return from_vector(out, {static_cast<int64_t>(out.size()), 1});
}

}  // namespace

int main(int argc, char** argv) {
  std::string output = "runs/perceptual_fmnist.safetensors";
  int64_t steps = 400, batch_size = 64, num_threads = 0, seed = 0, eval_images = 2000;
  double lr = 2e-4;
  train::Flags flags(
      "vq_pretrain_perceptual",
      "Trains the perceptual net's VGG16 features as a Fashion-MNIST classifier and saves them for "
      "--perceptual_weights.");
  flags.add_string("output", &output, "the weights file to write");
  flags.add_int("steps", &steps, "training steps", 1);
  flags.add_int("batch_size", &batch_size, "images per step", 1);
  flags.add_double("lr", &lr, "Adam learning rate", 0);
  flags.add_int("eval_images", &eval_images, "test images for the reported accuracy", 1);
  flags.add_int("seed", &seed, "random seed", 0);
  flags.add_int("num_threads", &num_threads, "CPU threads; 0 = all cores", 0);
  try {
    if (!flags.parse(argc, argv)) return 0;
    if (num_threads > 0) set_num_threads(static_cast<int>(num_threads));
    manual_seed(static_cast<uint64_t>(seed));
    models::PerceptualLoss net;
    net.net().requires_grad_(true);
    nn::Linear head(512, 10);
    nn::NamedTensors params = net.net().named_parameters();
    for (auto& p : head.named_parameters()) params.emplace_back("head." + p.first, p.second);
    nn::Adam opt(params, nn::AdamOptions{.lr = lr});
    const auto train_labels = train::fashion_mnist_labels("train"),
               test_labels = train::fashion_mnist_labels("test");
    train::LoaderOptions lo;
    lo.batch_size = batch_size;
    lo.flip = true;
    lo.seed = static_cast<uint64_t>(seed);
    train::DataLoader loader(train::open_dataset("fashion-mnist:train", 1, 32), 1, 32, lo);
    std::printf("vq_pretrain_perceptual: VGG16 features + linear head on %s, %lld steps of %lld\n",
                loader.dataset().describe().c_str(), static_cast<long long>(steps),
                static_cast<long long>(batch_size));
    train::ProgressBar bar("training", steps, 20);
    double loss_avg = 0;
    for (int64_t step = 1; step <= steps; ++step) {
      const auto batch = loader.next();
      const Tensor logits = classify(net, head, batch->images);
      // cross-entropy: -log softmax at the true class
      const Tensor loss =
          neg(mean(gather(log_softmax(logits, 1), 1, labels_for(batch->indices, train_labels))));
      opt.zero_grad();
      loss.backward();
      opt.step();
      loss_avg = step == 1 ? loss.item() : 0.95 * loss_avg + 0.05 * loss.item();
      bar.update(step, fmt::format("cross-entropy {:.3f}", loss_avg));
    }
    bar.finish(fmt::format("cross-entropy {:.3f}", loss_avg));

    NoGradGuard no_grad;
    train::LoaderOptions eo = train::LoaderOptions::single_pass(200, eval_images);
    train::DataLoader test(train::open_dataset("fashion-mnist:test", 1, 32), 1, 32, eo);
    int64_t correct = 0, total = 0;
    while (auto batch = test.next()) {
      const auto predicted = argmax(classify(net, head, batch->images), 1).to_vector<int64_t>();
      for (size_t i = 0; i < predicted.size(); ++i)
        correct += predicted[i] == test_labels[batch->indices[i]];
      total += static_cast<int64_t>(predicted.size());
    }
    const double accuracy = 100.0 * correct / total;
    const std::string source = fmt::format(
        "VGG16 features trained from scratch by vq_pretrain_perceptual as a Fashion-MNIST "
        "classifier ({} steps of {}, "
        "test accuracy {:.1f}% on {} images); not ImageNet weights",
        steps, batch_size, accuracy, total);
    nn::NamedTensors weights;
    for (auto& [name, t] : net.state_dict()) weights.emplace_back(name, t);
    if (std::filesystem::path(output).has_parent_path())
      std::filesystem::create_directories(std::filesystem::path(output).parent_path());
    nn::save_safetensors(output, weights, {{"vqgan.perceptual_source", source}});
    std::printf("test accuracy %.1f%% on %lld images\nwrote %s\n", accuracy,
                static_cast<long long>(total), output.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vq_pretrain_perceptual: error: %s\n", e.what());
    return 1;
  }
}
