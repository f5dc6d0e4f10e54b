// Drawing detection results into frames in place, in the frame's own format (YUV frames
// are drawn in YUV).
#pragma once

#include <cstdint>

#include "pefm/frame.h"
#include "pefm/frame_result.h"

namespace pefm {

enum class OverlayMode { kNone = 0, kHeatmap = 1, kContours = 2, kHeatmapContours = 3 };

// Heat map: jet colours blended with `alpha`, fading in from normalised 0.3 to full at
// 0.5 so that normal areas stay untouched and readable. Contours: the outline of the area
// of the map at or above `level` (pefm draws them at the result's region_level), 2 px, red
// (white in GRAY8).
void draw_overlay(const FrameView& frame, const FrameResult& result, OverlayMode mode, double alpha, double level);

// pefm's one heat-map colour map (jet), as 8-bit RGB, for normalised `value` clamped to
// 0..1: the element's overlays and pefm-eval's pictures colour the same score alike.
void heat_colour(double value, uint8_t rgb[3]);

}  // namespace pefm
