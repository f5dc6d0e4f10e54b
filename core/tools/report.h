// pefm-eval --report: one self-contained HTML page for a line engineer (no scripts, no
// network, no external files): the headline metrics, the decisions at the model's
// threshold, the ROC and PRO curves and the score histograms as inline SVG, the per-type
// table, and the worst misses and false alarms with their heat maps as embedded PNGs.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pefm/metrics.h"

namespace pefm {
namespace cli {

struct ReportRow {
  std::string type;
  int64_t images = 0;
  double image_auroc = NAN, pixel_auroc = NAN, aupro = NAN;
};

// An example picture: a test image with its ground truth and heat map (side_by_side).
struct ReportExample {
  std::string file, type;
  double score = NAN;             // on the report's scale
  std::vector<uint8_t> png;       // encoded picture
};

struct ReportData {
  std::string model, data, device, created;
  int64_t image_size = 0;
  // Scores and thresholds on the calibrated scale, not clamped (0.5 = the model's
  // threshold, 0 = the median normal pixel), else raw.
  bool calibrated = false;
  std::vector<ReportRow> rows;    // per defect type, then "overall" last
  std::vector<double> scores;     // every image's score, on the report's scale (finite)
  std::vector<int> labels;        // 1 = defective
  RocCurve roc;
  ProCurve pro;                   // thresholds on the raw scale; empty without masks
  std::optional<Decisions> at_model;  // thresholds on the report's scale
  Decisions at_best;
  std::string stated_rate;        // what the model states about its threshold (text), or empty
  std::vector<ReportExample> misses, false_alarms;
  std::string misses_title, false_alarms_title;
};

// The page. Every string from a file or folder name is escaped.
std::string html_report(const ReportData& data);

// Base64 (RFC 4648) of `bytes`, for data: URIs.
std::string base64(const std::vector<uint8_t>& bytes);

// `text` with &, <, >, " and ' escaped for HTML text and attribute values.
std::string html_escape(const std::string& text);

}  // namespace cli
}  // namespace pefm
