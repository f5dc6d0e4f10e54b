// Calibration: turns raw, unbounded residual scores into a normalised 0..1 score with
// the same meaning on every model (README.md, step 8). Computed by pefm-train on held-out
// normal images.
//
//   normalised(x) = clamp(0.5 + 0.5 * (x - threshold) / (threshold - base), 0, 1)
//
// `threshold` = mean + 3 std of the held-out normal images' image scores, so a normal
// image scores below 0.5 and the calibrated decision boundary sits at exactly 0.5
// (anomalib's convention); `base` = median of the normal pixel scores, which maps to 0.
// One mapping serves image scores and heat-map pixels alike, so a frame is anomalous
// exactly when some pixel of its map is: regions and decisions always agree.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace pefm {

struct Calibration {
  bool valid = false;
  int64_t images = 0;          // held-out normal images the statistics come from
  double threshold = 0.0;      // raw score that maps to 0.5
  double base = 0.0;           // raw score that maps to 0.0
  double image_mean = 0.0, image_std = 0.0, image_min = 0.0, image_max = 0.0;
  double pixel_mean = 0.0, pixel_std = 0.0;
  double val_false_positive_rate = 0.0;  // held-out normals above threshold
  std::vector<double> image_quantiles;   // 0%, 1%, ..., 100% of normal image scores
  std::vector<double> pixel_quantiles;   // same, over all normal pixels

  // Without valid calibration the raw value is returned unchanged.
  double normalize(double raw) const;
  torch::Tensor normalize(const torch::Tensor& raw) const;
  // Raw score of a normalised value (inverse of normalize inside (0, 1)).
  double denormalize(double normalised) const;

  // Builds the statistics from normal images' maps [N, H, W] and scores [N].
  // Throws std::invalid_argument on empty input or non-finite values.
  static Calibration from_normal(const torch::Tensor& maps, const torch::Tensor& scores);
};

}  // namespace pefm
