// Frame-level detection for the element and applications: frames in, plain results out
// (normalised score, heat map in frame coordinates, anomalous regions). Whole-frame or
// tiled (line-scan) processing. Instances for one model file and one set of
// DetectorOptions (the device as it resolves) are shared, so several elements hold one
// copy of the weights.
//
// No LibTorch types: the element compiles without LibTorch's headers. One frame runs
// through three stages, each in its own file: frame_input.cpp (frame -> tensor, upload),
// detector.cpp or tiled_map.cpp (the raw map, whole or tiled) and postprocess.cpp (NaN
// policy, normalise, decide, regions).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "pefm/calibration.h"
#include "pefm/config.h"
#include "pefm/frame.h"
#include "pefm/frame_result.h"
#include "pefm/stream_context.h"
#include "pefm/tiling.h"

namespace pefm {

class Detector;
struct Model;

// Settles the precision `options` will run at before anything is loaded: fp16 needs
// CUDA, so where the device resolves to the CPU it becomes fp32. Returns a sentence saying
// so, empty when nothing changed. Throws std::invalid_argument / std::runtime_error for a
// device that is malformed or absent (resolve_device).
std::string settle_precision(DetectorOptions& options);

class FrameDetector {
 public:
  // Loads (or reuses) the model at `model_path` for `options` (detector_registry.cpp).
  // Throws ModelFileError / std::runtime_error / std::invalid_argument with a message
  // naming the file or value.
  static std::shared_ptr<FrameDetector> acquire(const std::string& model_path, const DetectorOptions& options);
  // Uses an in-memory model (tests, applications that build models themselves).
  FrameDetector(std::shared_ptr<Model> model, const DetectorOptions& options);
  ~FrameDetector();
  FrameDetector(const FrameDetector&) = delete;
  FrameDetector& operator=(const FrameDetector&) = delete;

  // The frame is decided at `thresholds.image` and its regions cut at `thresholds.region`
  // (both normalised; postprocess), tiled as `tiles` (resolve()). Throws
  // std::invalid_argument for bad frames and tilings (check_tiles), Cancelled when
  // `context` is cancelled. With a `context`, its CPU thread count applies; on a CUDA
  // detector the work runs on the context's stream and the frame goes up through its
  // pinned buffer.
  FrameResult process(const FrameView& frame, const Thresholds& thresholds, const TileOptions& tiles = {},
                      StreamContext* context = nullptr);

  const Detector& detector() const;
  bool calibrated() const;
  // How the model decides: its threshold, the false-alarm rates it states.
  const Calibration& calibration() const;
  // Tile size the model was trained on (pefm-train --tile), 0 for whole images; throws
  // std::invalid_argument for a stored value outside 0 and kMinTileSize..65536.
  int trained_tile() const;
  // `tiles` with size kTileAsTrained replaced by trained_tile(): the one place that
  // default is resolved.
  TileOptions resolve(TileOptions tiles) const;
  // Throws std::invalid_argument naming tile-size or tile-overlap when resolve(tiles)
  // cannot be used on a width x height frame (check_tiles).
  void check(const TileOptions& tiles, int width, int height) const;
  // The model's input size in pixels (a tile of tile-size pixels becomes input_size ones).
  int64_t input_size() const;
  // Where it runs, as resolve_device() accepts it ("cpu", "cuda:0").
  std::string device() const;

  struct Impl;  // core/src/frame_detector_impl.h
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Number of live FrameDetector objects loaded through FrameDetector::acquire().
size_t shared_detector_count();

}  // namespace pefm
