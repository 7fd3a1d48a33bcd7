// The low-precision operand copies autocast makes for a backend that takes them (CUDA's cuDNN):
// contiguous or channels-last, and, for a weight, cached until the weight changes.
#pragma once

#include "autograd/tensor.h"

namespace vq {

// t in `dtype`, without recording a graph: contiguous, or with channels-last memory ([N, H, W, C]
// viewed as [N, C, H, W]; a weight [O, kH, kW, C] viewed as [O, C, kH, kW]).
// A tensor that already is such a copy is returned as it is.
Tensor low_precision_copy(const Tensor& t, DType dtype, bool channels_last);
// Whether t is a 4-d tensor with channels-last memory (strides {H*W*C, 1, W*C, C}).
bool is_channels_last(const Tensor& t);

// low_precision_copy of a weight, made once per version of its storage: a parameter is cast once
// per optimizer step however many forward passes use it (the discriminator runs three a step),
// as PyTorch's autocast cache does within its scope. Only leaves are cached (a computed weight
// changes identity every call); the copy is rebuilt after any in-place change (the optimizer
// step, copy_, load_state_dict) and forgotten with the weight's storage. VQ_CAST_CACHE=0: every
// call casts.
Tensor cached_low_precision_copy(const Tensor& weight, DType dtype, bool channels_last);

// Copies made by cached_low_precision_copy since the program started (cache misses), for tests.
int64_t low_precision_copies_made();

}  // namespace vq
