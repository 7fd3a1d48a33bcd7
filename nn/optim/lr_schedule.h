// Learning-rate schedules as a pure function of the step: constant, linear warm-up then
// constant, or linear warm-up then cosine decay to min_lr at total_steps.
#pragma once

#include <cstdint>
#include <string>

namespace vq::nn {

struct LrSchedule {
  enum class Kind { Constant, Warmup, Cosine };
  Kind kind = Kind::Constant;
  double base_lr = 1e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  // cosine only
  double min_lr = 0.0;      // cosine only

  double lr_at(int64_t step) const;                 // step counts from 0
  static Kind parse_kind(const std::string& name);  // "constant" | "warmup" | "cosine"
  static std::string kind_name(Kind kind);
};

}  // namespace vq::nn
