// GEMM on the CPU. float32 goes to oneDNN's sgemm (AVX-512 kernels where the CPU has them;
// OpenBLAS's Debian build is pinned to Haswell kernels on our machines and was about half as
// fast). float64 exists only for gradchecks and uses a plain loop, which also serves as the
// reference the float32 path is tested against. Row-major throughout.
#include <oneapi/dnnl/dnnl.h>

#include "autograd/cpu/cpu_backend.h"
#include "autograd/cpu/loops.h"

namespace vq::cpu {

namespace {

template <class T>
void gemm_reference(const Backend::GemmArgs& g, const T* A, const T* B, T* C) {
  // C[i, j] = alpha * sum_k op(A)[i, k] op(B)[k, j] + beta * C[i, j]
  auto a_at = [&](int64_t i, int64_t k) { return g.trans_a ? A[k * g.lda + i] : A[i * g.lda + k]; };
  auto b_at = [&](int64_t k, int64_t j) { return g.trans_b ? B[j * g.ldb + k] : B[k * g.ldb + j]; };
  parallel_for(g.M, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, g.N * g.K)),
               [&](int64_t i0, int64_t i1) {
                 std::vector<T> row(g.N);
                 for (int64_t i = i0; i < i1; ++i) {
                   std::fill(row.begin(), row.end(), T(0));
                   for (int64_t k = 0; k < g.K; ++k) {
                     const T a = a_at(i, k);
                     for (int64_t j = 0; j < g.N; ++j) row[j] += a * b_at(k, j);
                   }
                   for (int64_t j = 0; j < g.N; ++j) {
                     T& c = C[i * g.ldc + j];
                     c = static_cast<T>(g.alpha) * row[j] +
                         (g.beta == 0.0 ? T(0) : static_cast<T>(g.beta) * c);
                   }
                 }
               });
}

void sgemm(const Backend::GemmArgs& g, const float* A, const float* B, float* C) {
  const dnnl_status_t status = dnnl_sgemm(g.trans_a ? 'T' : 'N', g.trans_b ? 'T' : 'N', g.M, g.N,
                                          g.K, static_cast<float>(g.alpha), A, g.lda, B, g.ldb,
                                          static_cast<float>(g.beta), C, g.ldc);
  VQ_CHECK(status == dnnl_success, "oneDNN sgemm failed (status {}) for M={} N={} K={}",
           static_cast<int>(status), g.M, g.N, g.K);
}

}  // namespace

void CpuBackend::gemm(const GemmArgs& g, const Tensor& A, const Tensor& B, const Tensor& C) {
  if (g.M == 0 || g.N == 0) return;
  dispatch_floating(C.dtype(), "gemm", [&](auto tag) {
    using T = decltype(tag);
    const T* a = A.data<T>();
    const T* b = B.data<T>();
    T* c = C.data<T>();
    auto one = [&](int64_t i) {
      const T* ai = a + i * g.stride_a;
      const T* bi = b + i * g.stride_b;
      T* ci = c + i * g.stride_c;
      if constexpr (std::is_same_v<T, float>) {
        if (g.K == 0) {
          for (int64_t r = 0; r < g.M; ++r) {
            for (int64_t j = 0; j < g.N; ++j) ci[r * g.ldc + j] *= static_cast<float>(g.beta);
          }
        } else {
          sgemm(g, ai, bi, ci);
        }
      } else {
        gemm_reference(g, ai, bi, ci);
      }
    };
    // Many small products: one product per thread (oneDNN runs serially inside our parallel
    // region). Few or large ones: one at a time, each using every thread.
    const bool small = g.M * g.N * g.K < (int64_t{1} << 21);
    if (g.batch > 1 && small) {
      parallel_for(g.batch, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) one(i);
      });
    } else {
      for (int64_t i = 0; i < g.batch; ++i) one(i);
    }
  });
}

}  // namespace vq::cpu
