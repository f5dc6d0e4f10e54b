// Drawing detection results into frames in place, in the frame's own format (YUV frames
// are drawn in YUV).
#pragma once

#include "pefm/frame.h"
#include "pefm/frame_result.h"

namespace pefm {

enum class OverlayMode { kNone = 0, kHeatmap = 1, kContours = 2, kHeatmapContours = 3 };

// Heat map: jet colours blended with `alpha`, fading in from normalised 0.3 to full at
// 0.5 so that normal areas stay untouched and readable. Contours: the outline of the area
// at or above `threshold`, 2 px, red (white in GRAY8).
void draw_overlay(const FrameView& frame, const FrameResult& result, OverlayMode mode, double alpha,
                  double threshold);

}  // namespace pefm
