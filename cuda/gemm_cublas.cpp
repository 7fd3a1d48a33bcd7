// GEMM on cuBLAS: C[b] = alpha op(A[b]) op(B[b]) + beta C[b] for strided batches.
// Our interface is row-major while cuBLAS is column-major. A row-major M x N matrix read as
// column-major is its N x M transpose, so C^T = op(B)^T op(A)^T is one column-major call with
// the operands swapped and each keeping its own transpose flag and leading dimension.
// float32 runs without TF32 unless vq::cuda::set_allow_tf32(true); float64 for gradchecks.
// Size letters: M N K as in GemmArgs (C is M x N, the shared dim K).
#include <cublas_v2.h>
#include <fmt/format.h>

#include <climits>
#include <mutex>

#include "cuda/check.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_settings.h"

namespace vq::cuda {

namespace {

// One handle for the process (on the current device, the legacy default stream); created on
// first use because creating it needs a GPU. Never destroyed: the runtime may already be shut
// down when static destructors run.
cublasHandle_t cublas_handle() {
  static const cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    VQ_CUBLAS_CHECK(cublasCreate(&h));
    return h;
  }();
  return handle;
}

// The handle's math mode is shared state: one GEMM configures and enqueues at a time.
std::mutex& cublas_mutex() {
  static std::mutex mutex;
  return mutex;
}

void check_fits_int(const Backend::GemmArgs& g) {
  for (int64_t v : {g.M, g.N, g.K, g.lda, g.ldb, g.ldc, g.batch}) {
    VQ_CHECK(v <= INT_MAX,
             "gemm on cuda: M={} N={} K={} (lda {}, ldb {}, ldc {}, batch {}) exceed cuBLAS's "
             "32-bit sizes",
             g.M, g.N, g.K, g.lda, g.ldb, g.ldc, g.batch);
  }
}

}  // namespace

void CudaBackend::gemm(const GemmArgs& g, const Tensor& A, const Tensor& B, const Tensor& C) {
  if (g.M == 0 || g.N == 0 || g.batch == 0) return;
  if (g.K == 0) {
    // An empty product: C = beta * C (BLAS leaves it to the caller; cuBLAS may not touch C).
    const Tensor c = make_view(C, {g.batch, g.M, g.N}, {g.stride_c, g.ldc, 1}, C.offset());
    if (g.beta == 0.0) {
      fill(c, 0.0);
    } else {
      unary(UnaryOp::MulScalar, UnaryParams{g.beta, 0.0}, c, c);
    }
    return;
  }
  check_fits_int(g);
  const int m = static_cast<int>(g.M), n = static_cast<int>(g.N), k = static_cast<int>(g.K);
  const int lda = static_cast<int>(g.lda), ldb = static_cast<int>(g.ldb);
  const int ldc = static_cast<int>(g.ldc), batch = static_cast<int>(g.batch);
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;

  std::lock_guard<std::mutex> lock(cublas_mutex());
  cublasHandle_t handle = cublas_handle();
  // DEFAULT keeps float32 products in float32 (no TF32); TF32_TENSOR_OP allows tensor cores.
  VQ_CUBLAS_CHECK(
      cublasSetMathMode(handle, allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  switch (C.dtype()) {
    case DType::Float32: {
      const float alpha = static_cast<float>(g.alpha), beta = static_cast<float>(g.beta);
      VQ_CUBLAS_CHECK(cublasSgemmStridedBatched(
          handle, op_b, op_a, n, m, k, &alpha, static_cast<const float*>(B.raw_data()), ldb,
          g.stride_b, static_cast<const float*>(A.raw_data()), lda, g.stride_a, &beta,
          static_cast<float*>(C.raw_data()), ldc, g.stride_c, batch));
      return;
    }
    case DType::Float64: {
      const double alpha = g.alpha, beta = g.beta;
      VQ_CUBLAS_CHECK(cublasDgemmStridedBatched(
          handle, op_b, op_a, n, m, k, &alpha, static_cast<const double*>(B.raw_data()), ldb,
          g.stride_b, static_cast<const double*>(A.raw_data()), lda, g.stride_a, &beta,
          static_cast<double*>(C.raw_data()), ldc, g.stride_c, batch));
      return;
    }
    default: throw Error(fmt::format("gemm on cuda: unsupported dtype {}", dtype_name(C.dtype())));
  }
}

}  // namespace vq::cuda
