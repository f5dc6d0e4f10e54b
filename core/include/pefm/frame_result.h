// What frame-level detection gives back: plain data, no LibTorch and no GStreamer types, so
// the element, the overlay and applications read it without either.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace pefm {

struct FrameRegion {
  int x = 0, y = 0, width = 0, height = 0;  // bounding box in frame pixels
  int64_t area = 0;                         // frame pixels covered
  float peak = 0.0f;                        // highest normalised score inside
  // Continuous line-scan mode (WebStream) only, else web_height 0: the region's whole
  // extent on the web in frame pixels, rows counted from the stream's first row (x, y,
  // width, height above are then the part inside this frame), and why it was reported
  // (WebRegion::closed_by: "ended", "max-rows", "gap", "eos", "flush").
  int64_t web_y = 0, web_height = 0;
  int web_x = 0, web_width = 0;
  std::string closed_by;
};

struct FrameResult {
  float raw_score = 0.0f;  // max of the raw map
  float score = 0.0f;      // normalised (0..1; 0.5 = calibrated threshold)
  bool anomalous = false;  // score >= the image threshold
  int map_width = 0, map_height = 0;
  // Normalised heat map, row-major, always finite: 0..1 with a calibrated model, raw
  // scores for an uncalibrated one.
  std::vector<float> map;
  // Frame pixel (x, y) covers map position (x / map_scale_x, y / map_scale_y).
  double map_scale_x = 1.0, map_scale_y = 1.0;
  // 8-connected areas of the map at or above region_level, the region threshold (not the
  // image threshold: a normal frame can hold regions, an anomalous one none; see
  // Calibration::region_cut), highest peak first.
  std::vector<FrameRegion> regions;
  // The level the regions were cut at, on the map's scale: the regions are the areas of
  // map >= region_level, and the contours pefm draws outline them.
  float region_level = 0.5f;
};

// The two thresholds a frame is processed with, both on normalised scales where 0.5 is
// the model's calibrated value: `image` decides the frame (score >= image), `region` cuts
// the regions and contours (Calibration::region_raw).
struct Thresholds {
  double image = 0.5;
  double region = 0.5;
};

// Thrown by FrameDetector::process when its StreamContext was cancelled mid-frame.
class Cancelled : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace pefm
