// Finite-difference gradient check, callable from any test on any op.
//
// gradcheck projects the output onto a fixed random direction v (so one backward pass gives the
// whole vector-Jacobian product) and compares d(sum(v * fn(x)))/dx from autograd against central
// differences (f(x + eps) - f(x - eps)) / 2 eps, element by element, in float64.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace vq {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  uint64_t seed = 1234;  // for the projection direction
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0.0;
  std::string report;  // max errors and the first mismatching elements, per input
};

// `inputs` are leaves (float64 for a meaningful check; int64 inputs such as indices are passed
// through untouched); gradcheck enables requires_grad on the floating ones itself. `fn` may build
// broadcasts and non-contiguous views from them. Inputs that already are leaves requiring grad are
// perturbed and read in place, so a module's parameters can be checked by listing them as inputs
// while fn calls the module.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

}  // namespace vq
