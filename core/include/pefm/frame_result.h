// What frame-level detection gives back: plain data, no LibTorch and no GStreamer types, so
// the element, the overlay and applications read it without either.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

namespace pefm {

struct FrameRegion {
  int x = 0, y = 0, width = 0, height = 0;  // bounding box in frame pixels
  int64_t area = 0;                         // frame pixels covered
  float peak = 0.0f;                        // highest normalised score inside
};

struct FrameResult {
  float raw_score = 0.0f;  // max of the raw map
  float score = 0.0f;      // normalised (0..1; 0.5 = calibrated threshold)
  bool anomalous = false;  // score >= threshold
  int map_width = 0, map_height = 0;
  // Normalised heat map, row-major, always finite: 0..1 with a calibrated model, raw
  // scores for an uncalibrated one.
  std::vector<float> map;
  // Frame pixel (x, y) covers map position (x / map_scale_x, y / map_scale_y).
  double map_scale_x = 1.0, map_scale_y = 1.0;
  // 8-connected areas of the map at or above the threshold, highest peak first.
  std::vector<FrameRegion> regions;
};

// Thrown by FrameDetector::process when its StreamContext was cancelled mid-frame.
class Cancelled : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace pefm
