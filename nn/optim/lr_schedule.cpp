#include "nn/optim/lr_schedule.h"

#include <cmath>
#include <numbers>

#include "autograd/error.h"

namespace vq::nn {

double LrSchedule::lr_at(int64_t step) const {
  if (kind == Kind::Constant) return base_lr;
  if (step < warmup_steps)
    return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (kind == Kind::Warmup) return base_lr;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps);
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps));
  return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + std::cos(std::numbers::pi * progress));
}

LrSchedule::Kind LrSchedule::parse_kind(const std::string& name) {
  if (name == "constant") return Kind::Constant;
  if (name == "warmup") return Kind::Warmup;
  if (name == "cosine") return Kind::Cosine;
  throw Error(fmt::format("unknown LR schedule '{}': expected constant, warmup or cosine", name));
}

std::string LrSchedule::kind_name(Kind kind) {
  switch (kind) {
    case Kind::Constant: return "constant";
    case Kind::Warmup: return "warmup";
    case Kind::Cosine: return "cosine";
  }
  return "?";
}

}  // namespace vq::nn
