// Hooks for tests of callers' error paths. Not for applications.
#pragma once

#include <string>

#include "pefm/frame_detector.h"

namespace pefm {
namespace testing {

// The next `count` calls of detector.process() throw c10::OutOfMemoryError carrying
// `message`, as LibTorch does when a CUDA allocation fails mid-stream.
void inject_failures(FrameDetector& detector, int count, const std::string& message);

}  // namespace testing
}  // namespace pefm
