// Index kernels on [A, X, B] views (A outer, X the indexed axis, B inner), and bincount.
// Accumulating kernels (index_add, scatter_add) give each thread its own (a, b) range and walk
// the indices in order, so duplicate indices never race and sums are deterministic.
#include <cstring>

#include "autograd/cpu/cpu_backend.h"
#include "autograd/cpu/loops.h"

namespace vq::cpu {

namespace {
constexpr int64_t kColumns = 64;  // inner elements per task in the accumulating kernels
}

void CpuBackend::index_select(const Tensor& x, int64_t A, int64_t X, int64_t B, const Tensor& index,
                              const Tensor& out) {
  const int64_t I = index.numel();
  const size_t row = B * dtype_size(x.dtype());
  const char* in = static_cast<const char*>(x.raw_data());
  char* o = static_cast<char*>(out.raw_data());
  const int64_t* idx = index.data<int64_t>();
  parallel_for(A * I, std::max<int64_t>(1, 16384 / std::max<int64_t>(B, 1)),
               [&](int64_t t0, int64_t t1) {
                 for (int64_t t = t0; t < t1; ++t) {
                   const int64_t a = t / I, i = t % I;
                   std::memcpy(o + t * row, in + (a * X + idx[i]) * row, row);
                 }
               });
}

void CpuBackend::index_add(const Tensor& out, int64_t A, int64_t X, int64_t B, const Tensor& index,
                           const Tensor& src) {
  const int64_t I = index.numel(), blocks = (B + kColumns - 1) / kColumns;
  dispatch_arith(out.dtype(), "index_add", [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    const T* s = src.data<T>();
    const int64_t* idx = index.data<int64_t>();
    parallel_for(A * blocks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t a = t / blocks, b0 = (t % blocks) * kColumns, b1 = std::min(B, b0 + kColumns);
        for (int64_t i = 0; i < I; ++i) {
          T* dst = o + (a * X + idx[i]) * B;
          const T* from = s + (a * I + i) * B;
          for (int64_t b = b0; b < b1; ++b) dst[b] += from[b];
        }
      }
    });
  });
}

void CpuBackend::gather(const Tensor& x, int64_t A, int64_t X, int64_t B, const Tensor& index,
                        const Tensor& out) {
  const int64_t I = index.numel() / std::max<int64_t>(1, A * B);
  dispatch_arith(x.dtype(), "gather", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    T* o = out.data<T>();
    const int64_t* idx = index.data<int64_t>();
    parallel_for(A * I, std::max<int64_t>(1, 16384 / std::max<int64_t>(B, 1)),
                 [&](int64_t t0, int64_t t1) {
                   for (int64_t t = t0; t < t1; ++t) {
                     const int64_t a = t / I;
                     for (int64_t b = 0; b < B; ++b)
                       o[t * B + b] = in[(a * X + idx[t * B + b]) * B + b];
                   }
                 });
  });
}

void CpuBackend::scatter_add(const Tensor& out, int64_t A, int64_t X, int64_t B,
                             const Tensor& index, const Tensor& src) {
  const int64_t I = index.numel() / std::max<int64_t>(1, A * B);
  const int64_t blocks = (B + kColumns - 1) / kColumns;
  dispatch_arith(out.dtype(), "scatter_add", [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    const T* s = src.data<T>();
    const int64_t* idx = index.data<int64_t>();
    parallel_for(A * blocks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t a = t / blocks, b0 = (t % blocks) * kColumns, b1 = std::min(B, b0 + kColumns);
        for (int64_t i = 0; i < I; ++i) {
          const int64_t row = (a * I + i) * B;
          for (int64_t b = b0; b < b1; ++b) o[(a * X + idx[row + b]) * B + b] += s[row + b];
        }
      }
    });
  });
}

void CpuBackend::bincount(const Tensor& indices, const Tensor& counts) {
  const int64_t* idx = indices.data<int64_t>();
  int64_t* c = counts.data<int64_t>();
  std::memset(c, 0, counts.numel() * sizeof(int64_t));
  for (int64_t i = 0; i < indices.numel(); ++i) ++c[idx[i]];
}

}  // namespace vq::cpu
