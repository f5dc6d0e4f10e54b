// Several frames through FrameDetector::process's path at once, with the raw maps behind
// the results: for tools that rank raw scores (pefm-eval's metrics; the normalised map is
// clamped to 0..1, which ties the ranks at both ends). LibTorch types, so not part of
// frame_detector.h, which the element includes.
#pragma once

#include <vector>

#include <torch/types.h>

#include "pefm/frame_detector.h"

namespace pefm {

struct ScoredFrame {
  torch::Tensor raw;   // [h, w] float32 raw map on the CPU, finite by the detector's NaN policy
  FrameResult result;  // what FrameDetector::process returns for the frame
};

// Each frame processed as FrameDetector::process processes it (same tiling, blending,
// normalisation, decision and regions). Whole frames go through the detector as one
// batch; tiled frames one after another. Frames of one format only. Throws
// std::invalid_argument as process() does, and for mixed formats.
std::vector<ScoredFrame> process_frames(FrameDetector& detector, const std::vector<FrameView>& frames,
                                        const Thresholds& thresholds, const TileOptions& tiles = {});

}  // namespace pefm
