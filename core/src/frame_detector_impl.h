// Internal: what a FrameDetector holds (frame_detector.cpp, detector_registry.cpp).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "pefm/detector.h"
#include "pefm/frame_detector.h"

namespace pefm {

// Applies the context's CPU threads (StreamContext::set_cpu_threads) in the calling thread.
void apply_context_threads(const StreamContext* context);

struct FrameDetector::Impl {
  Impl(std::shared_ptr<Model> model, const DetectorOptions& options) : detector(std::move(model), options) {}

  // Throws the failure pefm::testing::inject_failures() asked for, if any is left.
  void fail_if_injected();

  Detector detector;
  std::atomic<int> injected_failures{0};
  std::mutex injected_mutex;
  std::string injected_message;
};

}  // namespace pefm
