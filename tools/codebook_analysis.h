// Codebook health of a trained model over a whole data set (the seed's
// codebook_utilization_check): real per-code usage counted over every image, set side by side
// with the model's own EMA view of its codebook, plus reconstruction quality.
#pragma once

#include <string>
#include <vector>

#include "models/vqgan.h"
#include "tools/fid.h"
#include "trainers/data/loader.h"
#include "trainers/quality.h"

namespace vq::tools {

struct CodebookReport {
  int64_t num_images = 0, num_vectors = 0, num_codes = 0;
  double temperature = 0;
  std::vector<int64_t> counts;             // per code, over the data set
  std::vector<double> ema_counts;          // the checkpoint's EMA cluster sizes
  std::vector<double> code_norms;          // ||e_k||
  std::vector<std::array<double, 2>> pca;  // codebook projected on its top two principal axes
  struct BatchRow {
    int64_t images, used_codes;
    double utilization, entropy, norm_entropy;
  };
  std::vector<BatchRow> batches;
  int64_t used_codes = 0, dead_codes = 0, ema_active_codes = 0;
  double utilization = 0, entropy = 0, normalized_entropy = 0, perplexity = 0,
         mean_batch_utilization = 0;
  train::ImageQuality quality;  // of the reconstructions from the codes assigned
  int64_t stlpips_images = 0;   // how many images ST-LPIPS measured
  std::string stlpips_note;     // which ST-LPIPS, or why none
  double rfid = NAN;            // NaN: not measured
  int64_t rfid_images = 0;
  std::string rfid_note;  // which network over how many images, or why not measured
  std::string verdict;    // a sentence comparing the EMA view with real usage
};

// `temperature` 0 assigns codes by argmin; T > 0 samples them from softmax(-d / T) as training
// does (with the quantizer's generator seeded by `seed`). `active_threshold` decides which EMA
// counts call a code active (the run's own setting). `quality` and `fid` measure the
// reconstructions. Prints a progress line now and then (the Inception network is slow on a CPU).
CodebookReport analyze_codebook(models::VQModel& model, train::DataLoader& loader,
                                double temperature, double active_threshold, uint64_t seed,
                                train::QualityMeter& quality, FidMeter& fid);

std::string report_summary_json(const CodebookReport& r, const std::string& model_path,
                                const std::string& data);
std::string report_table(const CodebookReport& r);  // the readable table printed by the tool
std::string per_code_csv(const CodebookReport& r);
std::string per_batch_csv(const CodebookReport& r);
// usage_sorted.png, usage_histogram.png, codebook_pca.png in `dir`.
void write_plots(const CodebookReport& r, const std::string& dir);

}  // namespace vq::tools
