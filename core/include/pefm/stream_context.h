// Per-caller state of the frame path that outlives one frame: the CUDA stream and pinned
// staging buffer of the upload (frame_input.cpp), and the cancel flag that the tiled map
// checks between batches. No LibTorch: the element owns one.
#pragma once

#include <atomic>
#include <memory>

namespace pefm {

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

  // CPU threads the work of process() and WebStream::push runs with, applied in the
  // calling thread (use_cpu_threads: 0 is default_cpu_threads()). Unset (-1): the calling
  // thread's setting stays.
  void set_cpu_threads(int threads) { threads_ = threads; }
  int cpu_threads() const { return threads_; }

  struct Impl;  // defined in frame_input.cpp, the upload that uses it
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> cancelled_{false};
  int threads_ = -1;
};

}  // namespace pefm
