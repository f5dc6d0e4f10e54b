// The detector: frames in, heat maps and scores out, on CPU or CUDA.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "pefm/config.h"
#include "pefm/model.h"
#include "pefm/preprocess.h"

namespace pefm {

struct Detection {
  torch::Tensor maps;    // [N, S, S] float32 raw anomaly maps, on the detector's device
  torch::Tensor scores;  // [N] float32 raw image scores (max of each map)
};

// While one exists, in any thread, cuDNN and cuBLAS run fp32 work in full fp32 rather than
// TF32 (a 10-bit mantissa on Ampere and later); when the last one ends, LibTorch's settings
// are as they were. A Detector's fp32 CUDA calls hold one: the switch is process-wide, and
// work outside them (pefm-train's later folds) keeps its own numerics.
class ExactFp32Scope {
 public:
  ExactFp32Scope();
  ~ExactFp32Scope();
  ExactFp32Scope(const ExactFp32Scope&) = delete;
  ExactFp32Scope& operator=(const ExactFp32Scope&) = delete;
};

class Detector {
 public:
  // Builds the detector's own inference copy of the network on the device (fp16 only on
  // CUDA), BatchNorm folded; the caller's model is left as it is, still trainable and
  // saveable. When the detector is the model's only owner, the original weights are
  // released. Share weights between users by sharing the Detector (FrameDetector does).
  Detector(std::shared_ptr<Model> model, const DetectorOptions& options = {});

  const Model& model() const { return *model_; }
  const ModelConfig& config() const { return model_->config; }
  const Calibration& calibration() const { return model_->calibration; }
  torch::Device device() const { return device_; }
  Precision precision() const { return precision_; }
  // Whether weights and inputs are NHWC (see DetectorOptions::layout).
  bool channels_last() const { return channels_last_; }
  // The layout rule: NHWC when asked for, or by default on the CPU.
  static bool uses_channels_last(const torch::Device& device, DetectorOptions::Layout layout) {
    return layout == DetectorOptions::Layout::kNhwc || (layout == DetectorOptions::Layout::kAuto && !device.is_cuda());
  }
  int64_t image_size() const { return model_->config.image_size; }

  // Frames [N, H, W, C] (uint8 or float in 0..1, any device) -> maps and scores.
  Detection detect(const torch::Tensor& frames, const ChannelMap& map = {});
  // Frames of different sizes ([1, H, W, C] each: tiles, crops) as one batch; each is
  // preprocessed on its own, so no full-resolution batch is ever held.
  Detection detect(const std::vector<torch::Tensor>& frames, const ChannelMap& map = {});
  // Already preprocessed input [N, 3, S, S] on any device.
  Detection detect_preprocessed(const torch::Tensor& x);

  // Stage timing for benchmarks: while `sink` is attached, every detection synchronises
  // the device after each stage and adds the milliseconds to it. nullptr detaches it. Not
  // for a detector that other threads use meanwhile (a FrameDetector's).
  void time_stages(StageTimes* sink);

 private:
  std::shared_ptr<Model> model_;
  PefmNet net_{nullptr};
  torch::Device device_;
  Precision precision_;
  torch::ScalarType dtype_;
  bool channels_last_ = false;
  StageTimes* stage_times_ = nullptr;
};

}  // namespace pefm
