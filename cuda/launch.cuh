// Device-side helpers shared by the .cu files: the 1-D launch helper with grid-stride loops,
// dtype dispatch, strided offsets for Strided<N> operands, and warp/block reductions.
// Size letters: n elements, N operands. Blocks are 1-D with a multiple of 32 threads unless a
// kernel says otherwise.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "autograd/switches.h"
#include "cuda/check.h"
#include "cuda/kernels.h"

namespace vq::cuda {

constexpr int kThreads = 256;

// Blocks for n elements at `threads` per block; capped (grid-stride loops cover the rest) so a
// huge tensor does not launch millions of blocks that each do one element.
inline unsigned int grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned int>(std::clamp<int64_t>(blocks, 1, int64_t{1} << 16));
}

// for i in [0, n) spread over every thread of the grid.
#define VQ_GRID_LOOP(i, n)                                                      \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; \
       i < static_cast<int64_t>(n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// kernel<<<grid_for(n), kThreads>>>(args...) and the launch check; nothing for n == 0.
template <class... Params, class... Args>
void launch_1d(const char* name, int64_t n, void (*kernel)(Params...), Args&&... args) {
  if (n <= 0) return;
  kernel<<<grid_for(n), kThreads>>>(static_cast<Params>(args)...);
  VQ_CUDA_CHECK_LAUNCH(name);
}

// f(T{}) for the C++ type of a dtype; the lists match the CPU kernels' dispatch.
template <class F>
void dispatch_floating(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::Float32: f(float{}); return;
    case DType::Float64: f(double{}); return;
    default: throw_unsupported_dtype(op, dtype);
  }
}
template <class F>
void dispatch_arith(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::Float32: f(float{}); return;
    case DType::Float64: f(double{}); return;
    case DType::Int64: f(int64_t{}); return;
    case DType::UInt8: f(uint8_t{}); return;
    default: throw_unsupported_dtype(op, dtype);
  }
}

// for i in [0, n) spread over every thread of the grid, i of type I: uint32_t where n < 2^31
// (32-bit arithmetic and division, several times cheaper on a GPU than 64-bit), int64_t beyond
// (dispatch_index picks).
#define VQ_GRID_LOOP_AS(I, i, n)                                                           \
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < static_cast<I>(n); \
       i += static_cast<I>(gridDim.x) * blockDim.x)

// VQ_VECTOR_ELEMENTWISE=0: elementwise kernels and copies one element per thread with 64-bit
// indices and no transposing tiles, as before 2026-12-07 (to compare on a GPU).
inline bool vector_elementwise() {
  static const bool on = env_switch("VQ_VECTOR_ELEMENTWISE", true);
  return on;
}

inline bool aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// f(I{}) with the index type for n elements (see VQ_GRID_LOOP_AS). `wide` forces int64_t (the
// VQ_VECTOR_ELEMENTWISE=0 comparison).
template <class F>
void dispatch_index(int64_t n, bool wide, F&& f) {
  if (!wide && n < (int64_t{1} << 31)) {
    f(uint32_t{});
  } else {
    f(int64_t{});
  }
}

// f(U{}) with the unsigned integer type of an element's size: raw bits, for moves that convert
// nothing (same-dtype copies keep NaN payloads, as memcpy does).
template <class F>
void dispatch_bits(size_t size, F&& f) {
  switch (size) {
    case 1: f(uint8_t{}); return;
    case 2: f(uint16_t{}); return;
    case 4: f(uint32_t{}); return;
    default: f(uint64_t{}); return;
  }
}

// Element offsets (per operand) of flat index i in the coalesced shape, innermost dim last; the
// division and remainder in i's type (every size fits it where i does).
template <int N, class I>
__device__ __forceinline__ void strided_offsets(const Strided<N>& s, I i, int64_t (&off)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = s.ndim - 1; d >= 0; --d) {
    const I size = static_cast<I>(s.sizes[d]);
    const I c = i % size;
    i /= size;
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += static_cast<int64_t>(c) * s.strides[k][d];
  }
}

template <class A>
__device__ __forceinline__ A shfl_down(A v, int delta) {
  if constexpr (sizeof(A) == 1) {
    return static_cast<A>(__shfl_down_sync(0xffffffffu, static_cast<int>(v), delta));
  } else {
    return __shfl_down_sync(0xffffffffu, v, delta);
  }
}

// Tree reduction inside a warp; lane 0 ends with the result.
template <class A, class F>
__device__ __forceinline__ A warp_reduce(A v, F combine) {
#pragma unroll
  for (int delta = 16; delta > 0; delta >>= 1) v = combine(v, shfl_down(v, delta));
  return v;
}

// Reduction over a 1-D block (blockDim.x a multiple of 32, at most 1024); every thread passes its
// partial and gets the block's result back. Safe to call repeatedly in one kernel.
template <class A, class F>
__device__ A block_reduce(A v, F combine, A identity) {
  __shared__ A partial[32];
  __shared__ A result;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_reduce(v, combine);
  __syncthreads();  // an earlier call may still be reading partial/result
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : identity;
    v = warp_reduce(v, combine);
    if (lane == 0) result = v;
  }
  __syncthreads();
  return result;
}

// a * b rounded on its own: keeps nvcc from fusing it into a following add, where matching the
// CPU's summation order and rounding is cheap (NOTE: the CPU build may contract elsewhere).
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }

// Threads for a block that walks rows of `len` elements: a power of two from 32 to 256, so short
// rows do not leave most of a big block idle.
inline int threads_for_row(int64_t len) {
  int t = 32;
  while (t < 256 && t < len) t *= 2;
  return t;
}

}  // namespace vq::cuda
