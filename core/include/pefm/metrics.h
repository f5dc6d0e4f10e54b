// Evaluation metrics as the PEFM authors compute them (the authors' protocol).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace pefm {

// Area under the ROC curve; tied scores count one half (the Mann-Whitney statistic, equal
// to sklearn's roc_auc_score). `scores` any shape, `labels` the same number of elements
// (non-zero = positive). Returns NaN when either class is absent.
double auroc(const torch::Tensor& scores, const torch::Tensor& labels);

// Which pixels count as a defect region's overlap in the PRO curve. kFilled: predicted
// pixels inside the region's filled image (its bounding box with holes filled, skimage's
// `prop.filled_image`: background not 8-connected to the box's border) over the region's area, as the PEFM authors' evaluation counts them
// (a region with holes can then exceed 1); kExact: the region's own pixels only (MVTec's
// and anomalib's evaluators).
enum class ProRegions { kFilled, kExact };

// The PRO curve: `steps` thresholds evenly spaced from the maximum to the minimum score;
// at each, the false positive rate over all negative pixels (score > threshold) and the
// mean overlap over every connected defect region of every image (label_regions in
// postprocess.h). maps: [N, H, W] float; masks: [N, H, W] (non-zero = defect). Empty
// without any region or negative pixel.
struct ProCurve {
  std::vector<double> thresholds, fpr, pro;  // thresholds descending
};
ProCurve pro_curve(const torch::Tensor& maps, const torch::Tensor& masks, int64_t steps = 1000,
                   ProRegions regions = ProRegions::kFilled);

// Area under the PRO curve: points with FPR <= max_fpr kept, their FPR rescaled to [0, 1]
// by min-max, trapezoidal area (the authors' protocol). NaN without any region.
double aupro(const torch::Tensor& maps, const torch::Tensor& masks, int64_t steps = 1000,
             double max_fpr = 0.3, ProRegions regions = ProRegions::kFilled);
double aupro(const ProCurve& curve, double max_fpr = 0.3);

// The regions at one pixel threshold (score >= level is outlined), against the masks:
// what a line engineer sees of the region threshold. maps: [N, H, W] float; masks:
// [N, H, W] (non-zero = defect); labels[i] non-zero = image i is defective.
struct RegionDecisions {
  double level = 0.0;
  double pixel_false_alarm_rate = NAN;  // normal pixels (of every image) outlined
  double good_pixel_rate = NAN;         // pixels of the good images outlined (what the
                                        // model's stated pixel rate is about)
  double pixel_recall = NAN;            // defect pixels outlined
  double region_overlap = NAN;          // mean over defect regions of their pixels outlined
                                        // (the PRO curve's value at `level`, exact regions)
  double defects_touched = NAN;         // defect regions with at least one pixel outlined
  double good_images_with_regions = NAN;  // good images holding an outlined pixel
  int64_t defect_regions = 0, good_images = 0;
};
// Throws std::invalid_argument for mismatched shapes.
RegionDecisions regions_at(const torch::Tensor& maps, const torch::Tensor& masks, const std::vector<int>& labels,
                           double level);

// The image-level ROC curve: (false positive rate, true positive rate) at every distinct
// score used as a threshold (score >= threshold is positive), from (0, 0) to (1, 1).
struct RocCurve {
  std::vector<double> fpr, tpr;
};
RocCurve roc_curve(const std::vector<double>& scores, const std::vector<int>& labels);

// Image decisions at one threshold: score >= threshold is called defective.
struct Decisions {
  double threshold = 0.0;
  int64_t true_positives = 0, false_positives = 0, true_negatives = 0, false_negatives = 0;

  // FP / good images; NaN without good images.
  double false_alarm_rate() const;
  // FN / defective images; NaN without defective images.
  double miss_rate() const;
  // TP / images called defective; NaN when none is.
  double precision() const;
  // TP / defective images (1 - miss rate).
  double recall() const;
  // 2 TP / (2 TP + FP + FN); NaN without defective images or calls.
  double f1() const;
};

// The decisions at `threshold`. `labels[i]` non-zero = defective. Throws
// std::invalid_argument when the sizes differ.
Decisions decide_at(const std::vector<double>& scores, const std::vector<int>& labels, double threshold);

// The threshold, among the scores themselves, with the highest F1 (ties: the highest
// such threshold, fewer false alarms), and its decisions; NaN threshold without
// defective images.
Decisions best_f1(const std::vector<double>& scores, const std::vector<int>& labels);

}  // namespace pefm
