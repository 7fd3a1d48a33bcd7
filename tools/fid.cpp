#include "tools/fid.h"

#include <algorithm>

#include "autograd/node.h"
#include "autograd/ops.h"

// LAPACK's pivoted Cholesky factorisation and symmetric eigensolver, BLAS's matrix product
// (Fortran; the trailing arguments are the lengths of the character arguments, which gfortran
// passes hidden).
extern "C" {
void dpstrf_(const char* uplo, const int* n, double* a, const int* lda, int* piv, int* rank,
             const double* tol, double* work, int* info, size_t uplo_len);
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
             double* work, const int* lwork, int* iwork, const int* liwork, int* info,
             size_t jobz_len, size_t uplo_len);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
            const double* beta, double* c, const int* ldc, size_t transa_len, size_t transb_len);
}

namespace vq::tools {

namespace {

// Eigenvalues (ascending) of the symmetric n x n matrix `a` (destroyed).
std::vector<double> symmetric_eigenvalues(std::vector<double>& a, int n) {
  const char jobz = 'N', uplo = 'U';
  std::vector<double> w(n);
  int info = 0, lwork = -1, liwork = -1, iwork_size = 0;
  double work_size = 0;
  dsyevd_(&jobz, &uplo, &n, a.data(), &n, w.data(), &work_size, &lwork, &iwork_size, &liwork, &info,
          1, 1);
  VQ_CHECK(info == 0, "Fréchet distance: LAPACK dsyevd's workspace query failed (info {})", info);
  lwork = static_cast<int>(work_size);
  liwork = iwork_size;
  std::vector<double> work(static_cast<size_t>(lwork));
  std::vector<int> iwork(static_cast<size_t>(liwork));
  dsyevd_(&jobz, &uplo, &n, a.data(), &n, w.data(), work.data(), &lwork, iwork.data(), &liwork,
          &info, 1, 1);
  VQ_CHECK(info == 0, "Fréchet distance: LAPACK dsyevd did not converge (info {})", info);
  return w;
}

// c [m, n] = op(a) b, column-major, with op(a) [m, k] (a stored [k, m] when `transpose_a`) and
// b [k, n].
std::vector<double> product(const std::vector<double>& a, const std::vector<double>& b, int m,
                            int n, int k, bool transpose_a) {
  const char ta = transpose_a ? 'T' : 'N', tb = 'N';
  const int lda = transpose_a ? k : m;
  const double one = 1, zero = 0;
  std::vector<double> c(static_cast<size_t>(m) * n);
  dgemm_(&ta, &tb, &m, &n, &k, &one, a.data(), &lda, b.data(), &k, &zero, c.data(), &m, 1, 1);
  return c;
}

// B [n, r] with s = B B^T for the symmetric positive semidefinite n x n matrix s: its pivoted
// Cholesky factor (P^T s P = L L^T, B = P L), r the numerical rank (LAPACK's default tolerance,
// n * eps * the largest diagonal entry). Column-major.
std::vector<double> semidefinite_factor(const std::vector<double>& s, int n, int& r) {
  std::vector<double> l = s;
  std::vector<int> piv(static_cast<size_t>(n));
  std::vector<double> work(2 * static_cast<size_t>(n));
  const char uplo = 'L';
  const double default_tolerance = -1;
  int info = 0;
  dpstrf_(&uplo, &n, l.data(), &n, piv.data(), &r, &default_tolerance, work.data(), &info, 1);
  VQ_CHECK(info >= 0, "Fréchet distance: LAPACK dpstrf refused argument {}", -info);
  // info 1: rank-deficient, the usual case with fewer images than feature dims.
  std::vector<double> b(static_cast<size_t>(n) * r, 0.0);
  for (int j = 0; j < r; ++j) {
    for (int k = j; k < n; ++k) b[j * static_cast<size_t>(n) + (piv[k] - 1)] = l[j * n + k];
  }
  return b;
}

// Both image sets as pytorch-fid reads them: 8-bit PNG values divided by 255 (a true division,
// as ToTensor's: div by a number multiplies by its reciprocal, one ulp off for half the levels).
Tensor as_eight_bit(const Tensor& x) {
  const Tensor levels = round(clamp(mul(add(x, 1.0), 127.5), 0.0, 255.0));
  return div(levels, scalar_tensor(255.0, levels.dtype(), levels.device()));
}

}  // namespace

FeatureStatistics::FeatureStatistics(int64_t dims)
    : dims_(dims), mean_(dims, 0.0), scatter_(dims * dims, 0.0) {}

void FeatureStatistics::add(const Tensor& features) {
  VQ_CHECK(features.dim() == 2 && features.size(1) == dims_,
           "feature statistics: expected features [N, {}], got {}", dims_,
           shape_str(features.shape()));
  const int64_t batch = features.size(0);
  if (batch == 0) return;
  NoGradGuard no_grad;
  const Tensor f = features.to(DType::Float64).cpu();
  const Tensor batch_mean = vq::mean(f, {0}, true);
  const Tensor centred = sub(f, batch_mean);
  const auto batch_scatter = matmul(centred.t(), centred).to_vector<double>();
  const auto m = batch_mean.to_vector<double>();
  const double total = static_cast<double>(count_ + batch);
  const double weight = static_cast<double>(count_) * static_cast<double>(batch) / total;
  std::vector<double> delta(dims_);
  for (int64_t i = 0; i < dims_; ++i) delta[i] = m[i] - mean_[i];
  for (int64_t i = 0; i < dims_; ++i) {
    for (int64_t j = 0; j < dims_; ++j)
      scatter_[i * dims_ + j] += batch_scatter[i * dims_ + j] + delta[i] * delta[j] * weight;
    mean_[i] += delta[i] * static_cast<double>(batch) / total;
  }
  count_ += batch;
}

bool FeatureStatistics::finite() const {
  auto all_finite = [](const std::vector<double>& v) {
    return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
  };
  return all_finite(mean_) && all_finite(scatter_);
}

std::vector<double> FeatureStatistics::covariance() const {
  VQ_CHECK(count_ >= 2, "a covariance needs at least 2 feature vectors, got {}", count_);
  std::vector<double> c(scatter_);
  for (double& v : c) v /= static_cast<double>(count_ - 1);
  return c;
}

double frechet_distance(const std::vector<double>& mean_1, const std::vector<double>& covariance_1,
                        const std::vector<double>& mean_2,
                        const std::vector<double>& covariance_2) {
  const size_t d = mean_1.size();
  VQ_CHECK(
      d > 0 && mean_2.size() == d && covariance_1.size() == d * d && covariance_2.size() == d * d,
      "Fréchet distance: means of {} and {} dims with covariances of {} and {} entries",
      mean_1.size(), mean_2.size(), covariance_1.size(), covariance_2.size());
  for (const auto* v : {&mean_1, &covariance_1, &mean_2, &covariance_2}) {
    VQ_CHECK(std::all_of(v->begin(), v->end(), [](double x) { return std::isfinite(x); }),
             "Fréchet distance: the feature statistics hold non-finite values");
  }
  const int n = static_cast<int>(d);
  double distance = 0;
  for (size_t i = 0; i < d; ++i) {
    distance += (mean_1[i] - mean_2[i]) * (mean_1[i] - mean_2[i]);
    distance += covariance_1[i * d + i] + covariance_2[i * d + i];
  }
  // S_1 = B B^T (column-major; the covariances are symmetric, so their row-major storage is
  // their column-major one too), then the eigenvalues of B^T S_2 B [r, r].
  int r = 0;
  const std::vector<double> b = semidefinite_factor(covariance_1, n, r);
  if (r == 0) return distance;  // S_1 = 0: Tr sqrt(S_1 S_2) = 0
  std::vector<double> m = product(b, product(covariance_2, b, n, r, n, false), r, r, n, true);
  double trace_sqrt = 0;
  for (double lambda : symmetric_eigenvalues(m, r)) trace_sqrt += std::sqrt(std::max(lambda, 0.0));
  return distance - 2 * trace_sqrt;
}

std::string rfid_text(double fid, int64_t images, const std::string& note) {
  if (std::isnan(fid)) return note;
  return fmt::format("{:.3f} ({} images; FID is biased upwards on small sets)", fid, images);
}

double frechet_distance(const FeatureStatistics& a, const FeatureStatistics& b) {
  return frechet_distance(a.mean(), a.covariance(), b.mean(), b.covariance());
}

FidMeter::FidMeter(const std::string& weights, Device device)
    : weights_(weights),
      originals_(models::FidInception::kFeatures),
      reconstructions_(models::FidInception::kFeatures) {
  if (!weights.empty()) net_ = std::make_unique<models::FidInception>(weights, device);
}

void FidMeter::add(const Tensor& reconstruction, const Tensor& original) {
  VQ_CHECK(reconstruction.shape() == original.shape(),
           "rFID: reconstructions {} and originals {} differ in shape",
           shape_str(reconstruction.shape()), shape_str(original.shape()));
  if (!net_) return;
  // pytorch-fid's default batch: bounds the 299x299 activations' memory whatever the caller's.
  constexpr int64_t kChunk = 50;
  for (int64_t first = 0; first < original.size(0); first += kChunk) {
    const int64_t n = std::min(kChunk, original.size(0) - first);
    originals_.add(net_->features(as_eight_bit(original.narrow(0, first, n))));
    reconstructions_.add(net_->features(as_eight_bit(reconstruction.narrow(0, first, n))));
  }
}

double FidMeter::fid() const {
  if (!net_ || images() < 2 || !originals_.finite() || !reconstructions_.finite()) return NAN;
  return frechet_distance(originals_, reconstructions_);
}

std::string FidMeter::description() const {
  if (!net_)
    return "rFID not measured: no --fid_weights file (docs/evaluation.md says how to make one)";
  if (images() < 2)
    return fmt::format("rFID not measured: {} image(s), at least 2 needed", images());
  for (const auto& [stats, which] :
       {std::pair{&reconstructions_, "reconstructions"}, {&originals_, "original images"}}) {
    if (!stats->finite())
      return fmt::format("rFID not measured: the {} held NaN or infinite values", which);
  }
  return fmt::format("rFID over {} images (pytorch-fid's Inception-v3, {})", images(), weights_);
}

}  // namespace vq::tools
