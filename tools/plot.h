// Minimal PNG charts for the analysis tool: bar chart, histogram and scatter plot with a title,
// labelled axes and numeric ticks. Text uses stb_easy_font (Debian's libstb), drawn at 2x.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vq::tools {

struct ChartLabels {
  std::string title, x_label, y_label;
};

// One bar per value, left to right.
void bar_chart(const std::string& path, const std::vector<double>& values,
               const ChartLabels& labels);
// Counts of `values` in `bins` equal-width bins between their min and max.
void histogram(const std::string& path, const std::vector<double>& values, int bins,
               const ChartLabels& labels);
// One line per series (name, x, y), each in its own colour, with a legend.
struct Series {
  std::string name;
  std::vector<double> x, y;
};
void line_chart(const std::string& path, const std::vector<Series>& series,
                const ChartLabels& labels);

// Points at (x, y) with radius growing with sqrt(size); points of size 0 are drawn as grey
// crosses (e.g. unused codes).
void scatter(const std::string& path, const std::vector<double>& x, const std::vector<double>& y,
             const std::vector<double>& size, const ChartLabels& labels);

}  // namespace vq::tools
