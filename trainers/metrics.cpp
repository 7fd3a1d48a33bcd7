#include "trainers/metrics.h"

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "autograd/error.h"
#include "nn/file_io.h"

namespace vq::train {

namespace {

void check_pair(const Tensor& a, const Tensor& b, const char* what) {
  VQ_CHECK(a.shape() == b.shape() && a.dim() == 4,
           "{}: expected two [N, C, H, W] batches of one shape, got {} and {}", what,
           shape_str(a.shape()), shape_str(b.shape()));
}

}  // namespace

std::vector<double> psnr_per_image(const Tensor& a, const Tensor& b) {
  check_pair(a, b, "psnr");
  const auto x = a.to_vector<float>(), y = b.to_vector<float>();
  const int64_t N = a.size(0), per = a.numel() / std::max<int64_t>(N, 1);
  std::vector<double> out(N);
  for (int64_t n = 0; n < N; ++n) {
    double se = 0;
    for (int64_t i = 0; i < per; ++i) {
      const double d =
          (static_cast<double>(x[n * per + i]) - y[n * per + i]) / 2.0;  // [-1,1] -> [0,1] units
      se += d * d;
    }
    const double mse = se / per;
    out[n] = mse <= 1e-10 ? 100.0 : 10.0 * std::log10(1.0 / mse);
  }
  return out;
}

std::vector<double> ssim_per_image(const Tensor& a, const Tensor& b) {
  check_pair(a, b, "ssim");
  const auto x = a.to_vector<float>(), y = b.to_vector<float>();
  const int64_t N = a.size(0), C = a.size(1), H = a.size(2), W = a.size(3);
  constexpr int R = 5;  // 11x11 window
  double window[2 * R + 1][2 * R + 1], total = 0;
  for (int i = -R; i <= R; ++i) {
    for (int j = -R; j <= R; ++j)
      total += window[i + R][j + R] = std::exp(-(i * i + j * j) / (2 * 1.5 * 1.5));
  }
  const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
  std::vector<double> out(N);
  for (int64_t n = 0; n < N; ++n) {
    double sum = 0;
    int64_t count = 0;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t base = (n * C + c) * H * W;
      auto at = [&](const std::vector<float>& v, int64_t yy, int64_t xx) {
        return (v[base + yy * W + xx] + 1.0) / 2.0;
      };
      for (int64_t i = R; i + R < H; ++i) {
        for (int64_t j = R; j + R < W; ++j) {
          double mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
          for (int u = -R; u <= R; ++u) {
            for (int v = -R; v <= R; ++v) {
              const double w = window[u + R][v + R] / total, p = at(x, i + u, j + v),
                           q = at(y, i + u, j + v);
              mx += w * p;
              my += w * q;
              sxx += w * p * p;
              syy += w * q * q;
              sxy += w * p * q;
            }
          }
          const double vx = sxx - mx * mx, vy = syy - my * my, cov = sxy - mx * my;
          sum +=
              ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
          ++count;
        }
      }
    }
    VQ_CHECK(count > 0, "ssim: images of {}x{} are smaller than the 11x11 window", H, W);
    out[n] = sum / count;
  }
  return out;
}

int64_t truncate_jsonl_after_step(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in.good()) return 0;
  std::vector<std::string> kept;
  int64_t dropped = 0;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    const bool keep = !j.is_discarded() && j.is_object() && j.contains("step") &&
                      j["step"].is_number_integer() && j["step"].get<int64_t>() <= step;
    if (keep) {
      kept.push_back(std::move(line));
    } else {
      ++dropped;
    }
  }
  in.close();
  if (dropped > 0) {
    std::string text;
    for (const auto& line : kept) text += line + '\n';
    nn::write_file_atomically(path, text);
  }
  return dropped;
}

JsonlWriter::JsonlWriter(const std::string& path, bool append)
    : path_(path), out_(path, append ? std::ios::app : std::ios::trunc) {
  VQ_CHECK(out_.good(), "cannot open '{}' for writing: {}", path, std::strerror(errno));
}

void JsonlWriter::write(const std::string& json_object) {
  out_ << json_object << '\n';
  out_.flush();
  VQ_CHECK(out_.good(), "writing to '{}' failed (disk full?)", path_);
}

}  // namespace vq::train
