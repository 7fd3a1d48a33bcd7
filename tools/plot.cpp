#include "tools/plot.h"

#include <stb_easy_font.h>
#include <stb_image_write.h>

#include <fmt/format.h>
#include <algorithm>
#include <cmath>

#include "autograd/error.h"
#include "nn/file_io.h"

namespace vq::tools {

namespace {

struct Color {
  uint8_t r, g, b;
};
constexpr Color kBlack{0, 0, 0}, kGrey{170, 170, 170}, kLight{230, 230, 230}, kBlue{31, 119, 180};

class Canvas {
 public:
  Canvas(int w, int h) : w_(w), h_(h), px_(static_cast<size_t>(w * h * 3), 255) {}

  void set(int x, int y, Color c) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
    uint8_t* p = &px_[(static_cast<size_t>(y) * w_ + x) * 3];
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  }
  void fill_rect(int x0, int y0, int x1, int y1, Color c) {
    for (int y = std::min(y0, y1); y <= std::max(y0, y1); ++y)
      for (int x = std::min(x0, x1); x <= std::max(x0, x1); ++x) set(x, y, c);
  }
  void line(int x0, int y0, int x1, int y1, Color c) {
    const int steps = std::max(std::abs(x1 - x0), std::abs(y1 - y0));
    for (int i = 0; i <= steps; ++i) {
      const double t = steps ? static_cast<double>(i) / steps : 0.0;
      set(static_cast<int>(std::lround(x0 + t * (x1 - x0))),
          static_cast<int>(std::lround(y0 + t * (y1 - y0))), c);
    }
  }
  void disc(int cx, int cy, int r, Color c) {
    for (int y = -r; y <= r; ++y)
      for (int x = -r; x <= r; ++x)
        if (x * x + y * y <= r * r) set(cx + x, cy + y, c);
  }
  // stb_easy_font text at 2x scale; vertical text reads bottom to top.
  static int text_width(const std::string& s) {
    return 2 * stb_easy_font_width(const_cast<char*>(s.c_str()));
  }
  void text(int x, int y, const std::string& s, Color c, bool vertical = false) {
    static float buffer[40000];
    const int quads =
        stb_easy_font_print(0, 0, const_cast<char*>(s.c_str()), nullptr, buffer, sizeof(buffer));
    for (int q = 0; q < quads; ++q) {
      const float* v = &buffer[q * 16];  // 4 vertices of (x, y, z, color) = 4 floats each
      const int qx0 = static_cast<int>(v[0]) * 2, qy0 = static_cast<int>(v[1]) * 2;
      const int qx1 = static_cast<int>(v[8]) * 2 - 1, qy1 = static_cast<int>(v[9]) * 2 - 1;
      for (int yy = qy0; yy <= qy1; ++yy)
        for (int xx = qx0; xx <= qx1; ++xx)
          vertical ? set(x + yy, y - xx, c) : set(x + xx, y + yy, c);
    }
  }
  void save(const std::string& path) const {
    std::string png;
    const auto append = [](void* ctx, void* data, int n) {
      static_cast<std::string*>(ctx)->append(static_cast<char*>(data), n);
    };
    VQ_CHECK(stbi_write_png_to_func(append, &png, w_, h_, 3, px_.data(), w_ * 3) != 0,
             "encoding '{}' failed", path);
    nn::write_file_atomically(path, png);
  }
  int width() const { return w_; }
  int height() const { return h_; }

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
};

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks over span.
double tick_step(double span, int target) {
  const double raw = span / target, power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

std::string tick_text(double v, double step) {
  if (std::abs(v) < step * 1e-6) return "0";
  if (step >= 1 && std::abs(v) < 1e6) return fmt::format("{:.0f}", v);
  return fmt::format("{:.3g}", v);
}

// The plot area of a chart and its data ranges: axes, ticks, grid, title and labels drawn.
class Axes {
 public:
  // right_margin leaves room beside the plot area (e.g. for a legend).
  Axes(Canvas& c, double x0, double x1, double y0, double y1, const ChartLabels& labels,
       int right_margin = 30)
      : c_(c), x0_(x0), x1_(x1 > x0 ? x1 : x0 + 1), y0_(y0), y1_(y1 > y0 ? y1 : y0 + 1) {
    left_ = 110;
    right_ = c.width() - right_margin;
    top_ = 60;
    bottom_ = c.height() - 80;
    c.text((c.width() - Canvas::text_width(labels.title)) / 2, 18, labels.title, kBlack);
    c.text((left_ + right_ - Canvas::text_width(labels.x_label)) / 2, c.height() - 32,
           labels.x_label, kBlack);
    c.text(18, (top_ + bottom_ + Canvas::text_width(labels.y_label)) / 2, labels.y_label, kBlack,
           true);
    const double ys = tick_step(y1_ - y0_, 6);
    for (double v = std::ceil(y0_ / ys) * ys; v <= y1_ + ys * 1e-9; v += ys) {
      const int py = y(v);
      c.line(left_, py, right_, py, kLight);
      const std::string t = tick_text(v, ys);
      c.text(left_ - 8 - Canvas::text_width(t), py - 6, t, kBlack);
    }
    const double xs = tick_step(x1_ - x0_, 8);
    for (double v = std::ceil(x0_ / xs) * xs; v <= x1_ + xs * 1e-9; v += xs) {
      const int px = x(v);
      c.line(px, bottom_, px, bottom_ + 5, kBlack);
      const std::string t = tick_text(v, xs);
      c.text(px - Canvas::text_width(t) / 2, bottom_ + 10, t, kBlack);
    }
    c.line(left_, top_, left_, bottom_, kBlack);
    c.line(left_, bottom_, right_, bottom_, kBlack);
  }
  int x(double v) const {
    return static_cast<int>(std::lround(left_ + (v - x0_) / (x1_ - x0_) * (right_ - left_)));
  }
  int y(double v) const {
    return static_cast<int>(std::lround(bottom_ - (v - y0_) / (y1_ - y0_) * (bottom_ - top_)));
  }

 private:
  Canvas& c_;
  double x0_, x1_, y0_, y1_;
  int left_, right_, top_, bottom_;
};

void draw_bars(Canvas& c, const std::vector<double>& heights, double x_start, double bar_width,
               const ChartLabels& labels) {
  const double top = heights.empty() ? 1.0 : *std::max_element(heights.begin(), heights.end());
  Axes axes(c, x_start, x_start + bar_width * static_cast<double>(heights.size()), 0.0,
            top > 0 ? top * 1.05 : 1.0, labels);
  for (size_t i = 0; i < heights.size(); ++i) {
    const int xa = axes.x(x_start + bar_width * static_cast<double>(i)),
              xb = axes.x(x_start + bar_width * (i + 1.0)) - 1;
    if (heights[i] > 0) c.fill_rect(xa, axes.y(heights[i]), std::max(xa, xb), axes.y(0), kBlue);
  }
}

}  // namespace

void bar_chart(const std::string& path, const std::vector<double>& values,
               const ChartLabels& labels) {
  Canvas c(1000, 600);
  draw_bars(c, values, 0.0, 1.0, labels);
  c.save(path);
}

void histogram(const std::string& path, const std::vector<double>& values, int bins,
               const ChartLabels& labels) {
  VQ_CHECK(bins >= 1, "histogram: need at least one bin");
  const double lo = values.empty() ? 0.0 : *std::min_element(values.begin(), values.end());
  double hi = values.empty() ? 1.0 : *std::max_element(values.begin(), values.end());
  if (hi <= lo) hi = lo + 1.0;
  std::vector<double> counts(bins, 0.0);
  for (double v : values)
    counts[std::min(bins - 1, static_cast<int>((v - lo) / (hi - lo) * bins))] += 1.0;
  Canvas c(1000, 600);
  draw_bars(c, counts, lo, (hi - lo) / bins, labels);
  c.save(path);
}

void line_chart(const std::string& path, const std::vector<Series>& series,
                const ChartLabels& labels) {
  // Okabe-Ito's colour-blind-safe colours (without its yellow, too faint on white) and five of
  // Tol's, so a dozen series stay distinct; repeated beyond that.
  static const Color palette[] = {{0, 114, 178},  {230, 159, 0}, {0, 158, 115},   {204, 121, 167},
                                  {86, 180, 233}, {213, 94, 0},  {0, 0, 0},       {136, 34, 85},
                                  {153, 153, 51}, {51, 34, 136}, {128, 128, 128}, {68, 170, 153}};
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const Series& s : series) {
    VQ_CHECK(s.x.size() == s.y.size(), "line_chart: series '{}' has {} x and {} y values", s.name,
             s.x.size(), s.y.size());
    for (double v : s.x) x0 = std::min(x0, v), x1 = std::max(x1, v);
    for (double v : s.y) y0 = std::min(y0, v), y1 = std::max(y1, v);
  }
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  const double pad = (y1 - y0) * 0.05 + 1e-9;
  constexpr int kLegendWidth = 250;  // beside the plot, so it never hides a line
  Canvas c(1100 + kLegendWidth, 650);
  Axes axes(c, x0, x1, std::min(0.0, y0 - pad), y1 + pad, labels, kLegendWidth + 30);
  for (size_t i = 0; i < series.size(); ++i) {
    const Color col = palette[i % (sizeof(palette) / sizeof(palette[0]))];
    const Series& s = series[i];
    for (size_t k = 1; k < s.x.size(); ++k) {
      for (int w = -1; w <= 1; ++w) {  // 3-pixel-thick lines
        c.line(axes.x(s.x[k - 1]), axes.y(s.y[k - 1]) + w, axes.x(s.x[k]), axes.y(s.y[k]) + w, col);
      }
    }
    const int ly = 70 + 22 * static_cast<int>(i);
    c.fill_rect(c.width() - kLegendWidth, ly + 4, c.width() - kLegendWidth + 24, ly + 9, col);
    c.text(c.width() - kLegendWidth + 32, ly, s.name, kBlack);
  }
  c.save(path);
}

void scatter(const std::string& path, const std::vector<double>& x, const std::vector<double>& y,
             const std::vector<double>& size, const ChartLabels& labels) {
  VQ_CHECK(x.size() == y.size() && x.size() == size.size(),
           "scatter: x, y and size differ in length");
  auto range = [](const std::vector<double>& v) {
    double lo = v.empty() ? 0 : *std::min_element(v.begin(), v.end()),
           hi = v.empty() ? 1 : *std::max_element(v.begin(), v.end());
    const double pad = (hi - lo) * 0.08 + 1e-9;
    return std::pair{lo - pad, hi + pad};
  };
  const auto [x0, x1] = range(x);
  const auto [y0, y1] = range(y);
  Canvas c(900, 800);
  Axes axes(c, x0, x1, y0, y1, labels);
  const double largest =
      size.empty() ? 1.0 : std::max(1e-12, *std::max_element(size.begin(), size.end()));
  for (size_t i = 0; i < x.size(); ++i) {
    const int px = axes.x(x[i]), py = axes.y(y[i]);
    if (size[i] <= 0) {
      c.line(px - 3, py - 3, px + 3, py + 3, kGrey);
      c.line(px - 3, py + 3, px + 3, py - 3, kGrey);
    } else {
      c.disc(px, py, 2 + static_cast<int>(std::lround(12 * std::sqrt(size[i] / largest))), kBlue);
    }
  }
  c.save(path);
}

}  // namespace vq::tools
