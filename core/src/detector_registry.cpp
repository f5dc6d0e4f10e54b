// FrameDetector::acquire: one detector per model file (path, modification time and size),
// resolved device, precision, BatchNorm folding and layout, shared by every element and
// application thread that asks for it.
#include <filesystem>
#include <map>
#include <mutex>

#include "pefm/detector.h"
#include "pefm/device.h"
#include "pefm/frame_detector.h"
#include "pefm/model_file.h"

namespace pefm {

namespace {

std::mutex g_registry_mutex;
std::map<std::string, std::weak_ptr<FrameDetector>> g_registry;

}  // namespace

std::shared_ptr<FrameDetector> FrameDetector::acquire(const std::string& model_path, const DetectorOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto canonical = fs::weakly_canonical(model_path, ec).string();
  const auto mtime = fs::last_write_time(model_path, ec).time_since_epoch().count();
  const auto size = fs::file_size(model_path, ec);
  // The device as it resolves: "auto", "cuda" and "cuda:0" share one copy of the weights.
  // Every other option that shapes the inference copy is part of the key too, as the
  // detector applies it (the layout: Detector::uses_channels_last), so an element asking for
  // unfolded BatchNorm or NCHW gets a detector that has it.
  const auto device = resolve_device(options.device);
  const bool nhwc = Detector::uses_channels_last(device, options.layout);
  const auto key = canonical + "|" + std::to_string(mtime) + "|" + std::to_string(ec ? 0 : size) + "|" +
                   device.str() + "|" + to_string(options.precision) + "|fold" +
                   std::to_string(options.fold_batchnorm) + "|nhwc" + std::to_string(nhwc);
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  if (auto existing = g_registry[key].lock()) return existing;
  auto created = std::make_shared<FrameDetector>(std::make_shared<Model>(load_model(model_path)), options);
  g_registry[key] = created;
  return created;
}

size_t shared_detector_count() {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  size_t n = 0;
  for (auto it = g_registry.begin(); it != g_registry.end();) {
    if (it->second.expired()) {
      it = g_registry.erase(it);
    } else {
      ++n;
      ++it;
    }
  }
  return n;
}

}  // namespace pefm
