#include "pefm/frame_detector.h"

#include <mutex>
#include <stdexcept>

#include <torch/torch.h>

#include "frame_detector_impl.h"
#include "pefm/calibration_maps.h"
#include "pefm/detector.h"
#include "pefm/frame_batch.h"
#include "pefm/device.h"
#include "pefm/frame_input.h"
#include "pefm/postprocess.h"
#include "pefm/threads.h"
#include "pefm/testing.h"
#include "tiled_map.h"

namespace pefm {

std::string settle_precision(DetectorOptions& options) {
  const bool on_cuda = resolve_device(options.device).is_cuda();
  if (options.precision != Precision::kFp16 || on_cuda) return "";
  options.precision = Precision::kFp32;
  return "precision=fp16 needs a CUDA device; device '" + options.device + "' is the CPU, using fp32";
}

FrameDetector::FrameDetector(std::shared_ptr<Model> model, const DetectorOptions& options)
    : impl_(std::make_unique<Impl>(std::move(model), options)) {
  trained_tile();  // a model whose stored tile size is unusable fails here, not at the first frame
}

FrameDetector::~FrameDetector() = default;

const Detector& FrameDetector::detector() const { return impl_->detector; }
bool FrameDetector::calibrated() const { return impl_->detector.calibration().valid; }

const Calibration& FrameDetector::calibration() const { return impl_->detector.calibration(); }
int64_t FrameDetector::input_size() const { return impl_->detector.image_size(); }
std::string FrameDetector::device() const { return impl_->detector.device().str(); }

int FrameDetector::trained_tile() const {
  const auto& t = impl_->detector.model().training;
  const auto it = t.find("tile");
  if (it == t.end()) return 0;
  int tile = -1;
  try {
    size_t used = 0;
    tile = std::stoi(it->second, &used);
    if (used != it->second.size()) tile = -1;
  } catch (const std::exception&) {
  }
  if (tile != 0 && (tile < kMinTileSize || tile > 65536)) {
    throw std::invalid_argument("the model's training.tile '" + it->second + "' is not 0 or " +
                                std::to_string(kMinTileSize) + "..65536");
  }
  return tile;
}

TileOptions FrameDetector::resolve(TileOptions tiles) const {
  if (tiles.size == kTileAsTrained) tiles.size = trained_tile();
  return tiles;
}

void FrameDetector::check(const TileOptions& tiles, int width, int height) const {
  check_tiles(resolve(tiles), width, height, input_size());
}

void apply_context_threads(const StreamContext* context) {
  if (context && context->cpu_threads() >= 0) use_cpu_threads(context->cpu_threads());
}

FrameResult FrameDetector::process(const FrameView& frame, const Thresholds& thresholds, const TileOptions& asked,
                                   StreamContext* context) {
  impl_->fail_if_injected();
  auto& detector = impl_->detector;
  const TileOptions tiles = resolve(asked);
  check_tiles(tiles, frame.width, frame.height, detector.image_size());
  apply_context_threads(context);
  const auto stop_if_cancelled = [context] {
    if (context && context->cancelled()) throw Cancelled("frame abandoned: the element is stopping");
  };
  stop_if_cancelled();
  torch::InferenceMode guard;
  const auto input = frame_input(frame, detector.device(), context, detector.model().config.resize);
  const auto raw = tiles.size <= 0 ? detector.detect(input.pixels.unsqueeze(0), input.channels).maps[0]
                                   : tiled_map(detector, input, tiles, stop_if_cancelled);
  return postprocess(raw, detector.calibration(), thresholds, frame.width, frame.height);
}

std::vector<ScoredFrame> process_frames(FrameDetector& frame_detector, const std::vector<FrameView>& frames,
                                        const Thresholds& thresholds, const TileOptions& asked) {
  auto& detector = frame_detector.impl().detector;
  const TileOptions tiles = frame_detector.resolve(asked);
  for (const auto& f : frames) {
    if (f.format != frames.front().format) throw std::invalid_argument("process_frames: frames of mixed formats");
    check_tiles(tiles, f.width, f.height, detector.image_size());
  }
  torch::InferenceMode guard;
  std::vector<torch::Tensor> raws;
  if (tiles.size <= 0) {
    std::vector<FrameInput> inputs;
    std::vector<torch::Tensor> pixels;
    for (const auto& f : frames) {
      inputs.push_back(frame_input(f, detector.device(), nullptr, detector.model().config.resize));
      pixels.push_back(inputs.back().pixels.unsqueeze(0));
    }
    if (!inputs.empty()) {
      const auto maps = detector.detect(pixels, inputs.front().channels).maps;
      for (int64_t i = 0; i < maps.size(0); ++i) raws.push_back(maps[i]);
    }
  } else {
    for (const auto& f : frames) raws.push_back(tiled_map(detector, frame_input(f, detector.device(), nullptr, detector.model().config.resize), tiles,
                                                      [] {}));
  }
  std::vector<ScoredFrame> out;
  for (size_t i = 0; i < frames.size(); ++i) {
    const auto raw = raws[i].to(torch::kCPU);
    out.push_back({finite_scores(raw).contiguous(),
                   postprocess(raw, detector.calibration(), thresholds, frames[i].width, frames[i].height)});
  }
  return out;
}

void FrameDetector::Impl::fail_if_injected() {
  if (injected_failures.load() > 0 && injected_failures.fetch_sub(1) > 0) {
    std::lock_guard<std::mutex> lock(injected_mutex);
    TORCH_CHECK_WITH(OutOfMemoryError, false, injected_message);
  }
}

namespace testing {

void inject_failures(FrameDetector& detector, int count, const std::string& message) {
  auto& impl = detector.impl();
  std::lock_guard<std::mutex> lock(impl.injected_mutex);
  impl.injected_message = message;
  impl.injected_failures = count;
}

}  // namespace testing

}  // namespace pefm
