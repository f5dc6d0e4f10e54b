// Fitting a Calibration (pefm/calibration.h) to normal images' maps and scores, and the
// operations of its scale on whole maps. LibTorch: pefm-train and the detector use it.
#pragma once

#include <vector>

#include <torch/types.h>

#include "pefm/calibration.h"

namespace pefm {

// The statistics of normal images' maps [N, H, W] and scores [N], with the threshold at
// mean + 3 std of the scores. Throws std::invalid_argument on empty input or non-finite
// values.
Calibration calibration_from_normal(const torch::Tensor& maps, const torch::Tensor& scores);

// Sets c's region threshold to the order statistic of the pixel scores in `maps` (normal
// images' maps, [N, H, W], from models that did not train on them) that at most a fraction
// `target` of them exceed (conformal_threshold over pixels: pixels of one image are not
// independent, so this is a rate of area, not a per-image guarantee), and records the
// fraction of `image_scores` (the same images' maxima) at or above it. Call after the image
// threshold is final: the threshold stays above `base`. Throws std::invalid_argument for
// empty or non-finite input or a target outside (0, 0.5].
void set_region_threshold(Calibration& c, const torch::Tensor& maps, const std::vector<double>& image_scores,
                          double target);

// A raw map on c's normalised scale (Calibration::normalize, element-wise); unchanged
// without valid calibration.
torch::Tensor normalize_map(const Calibration& c, const torch::Tensor& raw);

// The one policy for non-finite raw anomaly scores (fp16 overflow, NaN in a computation):
// NaN and +inf become the largest finite float, so that the frame is flagged rather than
// hidden; -inf becomes 0. Float32, on the scores' device.
torch::Tensor finite_scores(const torch::Tensor& raw);

}  // namespace pefm
