// Shared test helpers: tolerance comparison with a readable failure report, gradcheck wrapper,
// seeded random inputs, and the skip for machines without a GPU.
#pragma once

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "autograd/backend.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace vq::test {

// Passes when |actual - expected| <= atol + rtol * |expected| everywhere; otherwise reports the
// max abs/rel difference and the first mismatching elements.
inline ::testing::AssertionResult allclose(const Tensor& actual, const Tensor& expected,
                                           double atol = 1e-5, double rtol = 1e-5) {
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure() << "shape " << shape_str(actual.shape()) << " != expected "
                                         << shape_str(expected.shape());
  }
  const auto a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double max_abs = 0, max_rel = 0;
  std::string first;
  int bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(a[i] - e[i]);
    const bool nan_mismatch = std::isnan(a[i]) != std::isnan(e[i]);
    max_abs = std::max(max_abs, d);
    max_rel = std::max(max_rel, d / std::max(std::abs(e[i]), 1e-12));
    if (nan_mismatch || d > atol + rtol * std::abs(e[i])) {
      if (++bad <= 5) first += fmt::format("\n  [{}] actual {:.9g} expected {:.9g}", i, a[i], e[i]);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << a.size() << " elements differ (max abs " << max_abs << ", max rel "
         << max_rel << ", atol " << atol << ", rtol " << rtol << ")" << first;
}

inline ::testing::AssertionResult grads_ok(
    const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
    GradcheckOptions options = {}) {
  const GradcheckResult r = gradcheck(fn, inputs, options);
  if (r.ok) return ::testing::AssertionSuccess() << r.report;
  return ::testing::AssertionFailure() << "gradcheck failed:\n" << r.report;
}

// A temporary folder unique to this test process (emptied if it exists), removed with all it
// holds when the process exits (VQ_KEEP_TEST_FILES=1 keeps them to look at): ctest runs every
// test in a process of its own, and folders left behind once filled a CI machine's disk.
inline std::string temp_path(const std::string& name) {
  struct Folders {
    pid_t owner = ::getpid();  // a forked child that exits must not remove its parent's folders
    std::vector<std::filesystem::path> paths;
    ~Folders() {
      if (::getpid() != owner || std::getenv("VQ_KEEP_TEST_FILES")) return;
      std::error_code ignored;
      for (const auto& p : paths) std::filesystem::remove_all(p, ignored);
    }
  };
  static Folders folders;
  const auto p =
      std::filesystem::temp_directory_path() / fmt::format("vq_test_{}_{}", ::getpid(), name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  folders.paths.push_back(p);
  return p.string();
}

// Float64 normal values with a fixed seed.
inline Tensor randn64(const Shape& shape, uint64_t seed = 1) {
  Generator gen(seed);
  return randn(shape, gen, DType::Float64);
}
inline Tensor randn32(const Shape& shape, uint64_t seed = 1) {
  Generator gen(seed);
  return randn(shape, gen, DType::Float32);
}

// Expects `statement` to throw vq::Error whose message contains `needle`.
#define EXPECT_VQ_ERROR(statement, needle)                                                   \
  do {                                                                                       \
    try {                                                                                    \
      statement;                                                                             \
      ADD_FAILURE() << "expected vq::Error containing '" << (needle) << "', nothing thrown"; \
    } catch (const ::vq::Error& vq_error_) {                                                 \
      EXPECT_NE(std::string(vq_error_.what()).find(needle), std::string::npos)               \
          << "message was: " << vq_error_.what();                                            \
    }                                                                                        \
  } while (0)

// The tests of CUDA-only behaviour, which the loopback device (VQ_TEST_LOOPBACK=1: "cuda" tensors
// run the CPU kernels) cannot stand in for, each with the reason. The one list: every other CUDA
// test runs on loopback. Returns the reason for the running test, or nullptr.
inline const char* loopback_skip_reason() {
  static const std::map<std::string, const char*> skips = {
      {"CudaAvailability.ClearErrorWithoutGpu",
       "checks the message on a machine without a GPU, and loopback poses as one"},
      {"CudaLinalg.Tf32SwitchIsUsedAndRestored", "TF32 is a tensor-core mode of cuBLAS and cuDNN"},
      {"CudaAllocator.SizeClassesStatsAndReuse", "the caching allocator is CUDA's"},
      {"CudaAllocator.OutOfMemoryIsAClearError", "the caching allocator is CUDA's"},
      {"CudaModel.AllocatorReleasesTheCacheAndRetriesUnderALimit",
       "the caching allocator is CUDA's"},
      {"CudaNccl.OneRankCollectivesRunOnTheGpu", "NCCL runs on GPUs only"},
  };
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const auto it = skips.find(std::string(info->test_suite_name()) + "." + info->name());
  return it == skips.end() ? nullptr : it->second;
}

#define VQ_SKIP_ON_LOOPBACK()                                                     \
  do {                                                                            \
    if (::vq::cuda_is_loopback()) {                                               \
      if (const char* vq_why_ = ::vq::test::loopback_skip_reason()) {             \
        GTEST_SKIP() << "CUDA-only, not run on the loopback device: " << vq_why_; \
      }                                                                           \
    }                                                                             \
  } while (0)

// Skips a CUDA test where no GPU can be used, with the reason. On a machine that is meant to have
// one, set VQ_REQUIRE_CUDA=1: the test then fails with the backend's reason instead of skipping
// (an old driver must not turn a GPU run into a green run of skips).
#define VQ_SKIP_WITHOUT_CUDA()                                                              \
  do {                                                                                      \
    if (!::vq::cuda_available()) {                                                          \
      if (std::getenv("VQ_REQUIRE_CUDA") != nullptr) {                                      \
        try {                                                                               \
          ::vq::zeros({1}, ::vq::DType::Float32, ::vq::Device{::vq::DeviceType::CUDA, 0});  \
        } catch (const ::vq::Error& vq_error_) {                                            \
          FAIL() << "VQ_REQUIRE_CUDA is set but CUDA is unusable: " << vq_error_.what();    \
        }                                                                                   \
      }                                                                                     \
      GTEST_SKIP() << (::vq::backend_registered(::vq::DeviceType::CUDA)                     \
                           ? "no GPU on this machine; CUDA-vs-CPU checks need one"          \
                           : "built without the CUDA backend (VQ_CUDA=OFF or no toolkit)"); \
    }                                                                                       \
    VQ_SKIP_ON_LOOPBACK();                                                                  \
  } while (0)

// A low precision the device cannot compute in: on a GPU a reported skip naming the capability
// (gpu_check.sh accepts no other skip); on the loopback device, whose CPU kernels have no float16,
// a printed note (the test's other precisions ran). Call at the end of the test.
inline void report_missing_precisions(const std::string& missing) {
  if (missing.empty()) return;
  if (::vq::cuda_is_loopback()) {
    fmt::print("loopback: not run in {}\n", missing);
  } else {
    GTEST_SKIP() << "capability missing: " << missing;
  }
}

}  // namespace vq::test
