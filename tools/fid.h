// rFID: the Fréchet Inception Distance between a data set's images and their reconstructions,
// the number tokenizer papers report (taming-transformers, MaskGIT, LlamaGen), measured with
// pytorch-fid's Inception network (models/fid_inception.h) and its formula:
//
//   FID = |mu_1 - mu_2|^2 + Tr(S_1) + Tr(S_2) - 2 Tr sqrt(S_1 S_2)
//
// over the 2048-d pool features' means mu and covariances S (numpy.cov's, divided by n - 1).
// Both image sets are quantised to 8 bits first, as the PNG files pytorch-fid reads would be.
// FID is biased upwards on small sets (a few thousand images at least are usual), so every
// report prints its image count beside it.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "models/fid_inception.h"

namespace vq::tools {

// Mean and covariance of feature vectors accumulated batch by batch in float64: each batch's own
// mean and scatter matrix are merged into the totals (Chan, Golub and LeVeque's pairwise update),
// which keeps the precision of a two-pass computation over all rows.
class FeatureStatistics {
 public:
  explicit FeatureStatistics(int64_t dims);
  void add(const Tensor& features);  // [N, dims], any floating dtype and device
  int64_t count() const { return count_; }
  int64_t dims() const { return dims_; }
  const std::vector<double>& mean() const { return mean_; }
  std::vector<double> covariance() const;  // dims x dims, row-major; needs count() >= 2
  bool finite() const;                     // whether no feature added held NaN or infinity

 private:
  int64_t dims_, count_ = 0;
  std::vector<double> mean_, scatter_;  // scatter: the sum of (x - mean)(x - mean)^T
};

// The Fréchet distance of two Gaussians. Tr sqrt(S_1 S_2) is the sum of the square roots of the
// eigenvalues of S_1 S_2, which (AB and BA share their nonzero eigenvalues) are those of the
// symmetric r x r matrix B^T S_2 B, where S_1 = B B^T is S_1's pivoted Cholesky factorisation
// of rank r (LAPACK's dpstrf, then dsyevd): r is the number of images less one when there are
// fewer than dims, so small sets cost milliseconds, and 2048 full dims ~10 s on 2 cores.
// pytorch-fid takes scipy's square root of the non-symmetric product and adds eps * I to both
// covariances when that fails on a singular product; the symmetric route needs no offset
// (eigenvalues that rounding pushes below zero count as zero) and agrees with it to ~1e-8
// relative on full-rank and rank-deficient covariances alike.
double frechet_distance(const std::vector<double>& mean_1, const std::vector<double>& covariance_1,
                        const std::vector<double>& mean_2, const std::vector<double>& covariance_2);
double frechet_distance(const FeatureStatistics& a, const FeatureStatistics& b);

// The --fid_weights flag's help, shared by the tools that report rFID.
inline constexpr const char* kFidWeightsHelp =
    "pytorch-fid's Inception weights converted by scripts/convert_fid_inception.py: adds rFID "
    "(slow on a CPU: ~7 image pairs/s on 2 cores); empty = no rFID";

// How the tools print an rFID: the value with its image count ("12.345 (200 images; FID is
// biased upwards on small sets)"), or, for NaN, `note` (why it was not measured).
std::string rfid_text(double fid, int64_t images, const std::string& note);

// rFID of reconstructions against their originals, image pair by image pair.
class FidMeter {
 public:
  // `weights`: the converted Inception file (loaded on `device`), or "" to measure nothing
  // (description() says so). Throws if the file is missing or is not the network.
  FidMeter(const std::string& weights, Device device);
  bool measures() const { return net_ != nullptr; }
  // Two batches in [-1, 1] of one shape [N, 1 or 3, H, W].
  void add(const Tensor& reconstruction, const Tensor& original);
  int64_t images() const { return originals_.count(); }
  const FeatureStatistics& originals() const { return originals_; }
  const FeatureStatistics& reconstructions() const { return reconstructions_; }
  // The distance over the pairs added (NaN when not measured, with fewer than 2 pairs, or when
  // an image held NaN or infinity). Takes seconds at 2048 dims on a CPU: call once.
  double fid() const;
  // "rFID over N images (pytorch-fid's Inception, FILE)" or why rFID is not measured.
  std::string description() const;

 private:
  std::unique_ptr<models::FidInception> net_;
  std::string weights_;
  FeatureStatistics originals_, reconstructions_;
};

}  // namespace vq::tools
