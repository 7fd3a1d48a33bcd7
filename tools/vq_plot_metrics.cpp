// vq_plot_metrics: draws one metric of several training runs' metrics files (JSONL) over the
// training steps as a line chart, e.g. batch utilisation for the collapse study.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/error.h"
#include "tools/plot.h"
#include "trainers/flags.h"

namespace {

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace vq;
  std::string metrics, labels, key = "batch_utilization", output = "metrics.png", title, y_label;
  train::Flags flags(
      "vq_plot_metrics",
      "Plots a metric of one or more runs' <name>.metrics.jsonl over training steps.");
  flags.add_string("metrics", &metrics, "comma-separated metrics.jsonl files");
  flags.add_string("labels", &labels, "comma-separated legend labels (default: the file names)");
  flags.add_string("key", &key, "the metric to plot");
  flags.add_string("output", &output, "the PNG to write");
  flags.add_string("title", &title, "chart title (default: the key)");
  flags.add_string("y_label", &y_label, "y-axis label (default: the key)");
  try {
    if (!flags.parse(argc, argv)) return 0;
    const auto files = split(metrics);
    VQ_CHECK(!files.empty(), "--metrics: no files given");
    auto names = labels.empty() ? files : split(labels);
    VQ_CHECK(names.size() == files.size(), "--labels: {} labels for {} files", names.size(),
             files.size());
    std::vector<tools::Series> series;
    for (size_t i = 0; i < files.size(); ++i) {
      std::ifstream in(files[i]);
      VQ_CHECK(in.good(), "cannot open '{}'", files[i]);
      tools::Series s{names[i], {}, {}};
      std::string line;
      int64_t number = 0;
      while (std::getline(in, line)) {
        ++number;
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception& e) {
          throw Error(fmt::format("{}:{}: not JSON: {}", files[i], number, e.what()));
        }
        if (!j.contains(key) || !j.contains("step")) continue;  // e.g. validation lines
        s.x.push_back(j["step"].get<double>());
        s.y.push_back(j[key].get<double>());
      }
      VQ_CHECK(!s.x.empty(), "{} has no lines with \"{}\"", files[i], key);
      series.push_back(std::move(s));
    }
    tools::line_chart(
        output, series,
        {title.empty() ? key : title, "training step", y_label.empty() ? key : y_label});
    std::printf("wrote %s (%zu runs)\n", output.c_str(), series.size());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vq_plot_metrics: error: %s\n", e.what());
    return 1;
  }
}
