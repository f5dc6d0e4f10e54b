// The last stage of a frame's path: the raw heat map turned into what callers act on --
// the NaN policy, the calibrated 0..1 scale, the decision and the anomalous regions. The
// element and pefm-eval use the same regions (label_regions).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "pefm/calibration_maps.h"
#include "pefm/frame_result.h"

namespace pefm {

// Labels the 8-connected regions of a binary mask [H, W] (non-zero = set): returns an
// int32 [H, W] map with 0 for background and 1..count for the regions, and the count.
std::pair<torch::Tensor, int64_t> label_regions(const torch::Tensor& mask);

// Bounding boxes, areas and peaks of the 8-connected areas of `map` ([h, w] float32,
// contiguous, on the CPU) at or above `threshold`, in the pixels of a width x height frame
// that the map covers; highest peak first.
std::vector<FrameRegion> map_regions(const torch::Tensor& map, double threshold, int width, int height);

// Raw map [h, w] of a width x height frame -> FrameResult. NaN policy: the detector's
// (finite_scores: NaN and +inf the largest float, flagging the frame; -inf 0), in raw and
// normalised maps alike, so every map a caller sees is finite.
// The frame is decided at `thresholds.image` (normalised); its regions are the areas of
// the normalised map at or above FrameResult::region_level, the region cut
// (calibration.region_cut(thresholds.region)) on the map's scale.
FrameResult postprocess(const torch::Tensor& raw, const Calibration& calibration, const Thresholds& thresholds,
                        int width, int height);

// postprocess without the regions (the continuous web cuts its own across frames): the
// scores, the decision, the normalised map and region_level.
FrameResult score_map(const torch::Tensor& raw, const Calibration& calibration, const Thresholds& thresholds,
                      int width, int height);

// The normalised map of a raw one under the NaN policy above: float32, contiguous, CPU.
torch::Tensor normalized_map(const torch::Tensor& raw, const Calibration& calibration);

// FrameResult::region_level: the region cut for `thresholds.region` on the map's scale.
float region_level(const Calibration& calibration, const Thresholds& thresholds);

}  // namespace pefm
