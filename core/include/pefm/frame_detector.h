// Frame-level detection for the element and applications: frames in, plain results out
// (normalised score, heat map in frame coordinates, anomalous regions). Whole-frame or
// tiled (line-scan) processing. Instances for one model file, device and precision are
// shared, so several elements hold one copy of the weights.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "pefm/detector.h"
#include "pefm/frame.h"

namespace pefm {

struct TileOptions {
  int size = 0;     // tile edge in native frame pixels; 0 = whole frame resized
  int overlap = 0;  // pixels shared by neighbouring tiles (blended)
};

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
  std::vector<FrameRegion> regions;
};

// Per-caller CUDA state for FrameDetector::process: a dedicated CUDA stream and a pinned
// host staging buffer reused from frame to frame (one asynchronous upload per frame, no
// allocation once the frame size is steady). One per element instance / calling thread;
// not shared between threads. Holds nothing and costs nothing for CPU detectors.
class StreamContext {
 public:
  StreamContext();
  ~StreamContext();
  StreamContext(const StreamContext&) = delete;
  StreamContext& operator=(const StreamContext&) = delete;

  // From any thread: while set, process() stops between tile batches by throwing
  // Cancelled, so a state change does not wait for a large frame to finish.
  void cancel(bool on) { cancelled_ = on; }
  bool cancelled() const { return cancelled_; }

  struct Impl;

 private:
  friend class FrameDetector;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> cancelled_{false};
};

// Thrown by FrameDetector::process when its StreamContext was cancelled mid-frame.
class Cancelled : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bounds on tiling, so that no setting makes one frame's work explode: tiles of at least
// kMinTileSize pixels, an overlap of at most half a tile, and at most kMaxTilesPerFrame
// tiles a frame, fewer for models larger than kTileBudgetSize px (64 at 1024 px), so that
// the network-input pixels of one frame stay bounded.
constexpr int kMinTileSize = 32;
constexpr int64_t kMaxTilesPerFrame = 1024;
constexpr int64_t kTileBudgetSize = 256;
// Throws std::invalid_argument naming tile-size or tile-overlap when `tiles` cannot be
// used on a width x height frame by a model of `input_size` px.
void check_tiles(const TileOptions& tiles, int width, int height, int64_t input_size);

class FrameDetector {
 public:
  // Loads (or reuses) the model at `model_path` for `options`. Throws ModelFileError /
  // std::runtime_error / std::invalid_argument with a message naming the file or value.
  static std::shared_ptr<FrameDetector> acquire(const std::string& model_path, const DetectorOptions& options);
  // Uses an in-memory model (tests, applications that build models themselves).
  FrameDetector(std::shared_ptr<Model> model, const DetectorOptions& options);

  // `threshold` is on the normalised scale. Throws std::invalid_argument for bad frames
  // and tilings (check_tiles), Cancelled when `context` is cancelled.
  // With a `context` on a CUDA detector, the work runs on the context's stream and the
  // frame goes up through its pinned buffer.
  FrameResult process(const FrameView& frame, double threshold, const TileOptions& tiles = {},
                      StreamContext* context = nullptr);

  const Detector& detector() const { return detector_; }
  bool calibrated() const { return detector_.calibration().valid; }
  // Tile size the model was trained on (pefm-train --tile), 0 for whole images; throws
  // std::invalid_argument for a stored value outside 0 and kMinTileSize..65536.
  int trained_tile() const;
  // Number of live FrameDetector objects loaded through acquire() (for tests).
  static size_t shared_instances();

  // Fault injection for tests of the callers' error paths: the next `count` calls of
  // process() throw c10::OutOfMemoryError carrying `message`, as LibTorch does when a CUDA
  // allocation fails mid-stream.
  void inject_failures(int count, const std::string& message);

 private:
  Detector detector_;
  std::atomic<int> injected_failures_{0};
  std::mutex injected_mutex_;
  std::string injected_message_;
};

// The frame as float RGB in 0..1, [H, W, 3]: packed formats reordered, gray replicated,
// YUV converted with the frame's matrix (kr, kb) and range, chroma repeated (nearest). This
// is what the detector sees of a frame.
torch::Tensor frame_to_rgb(const FrameView& frame);

// Tile origins along one axis: tiles of `tile` px with `overlap`, the last one flush with
// the end; a frame shorter than a tile gets one tile of the frame's length.
std::vector<int> tile_origins(int length, int tile, int overlap);

}  // namespace pefm
