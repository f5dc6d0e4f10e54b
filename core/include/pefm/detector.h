// The detector: frames in, heat maps and scores out, on CPU or CUDA.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include <torch/types.h>

#include "pefm/config.h"
#include "pefm/model.h"
#include "pefm/preprocess.h"

namespace pefm {

struct DetectorOptions {
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  Precision precision = Precision::kFp32;
};

struct Detection {
  torch::Tensor maps;    // [N, S, S] float32 raw anomaly maps, on the detector's device
  torch::Tensor scores;  // [N] float32 raw image scores (max of each map)
};

class Detector {
 public:
  // Moves the model's network to the device (fp16 only on CUDA). The model is shared,
  // not copied: detectors built from one Model on one device share its weights.
  Detector(std::shared_ptr<Model> model, const DetectorOptions& options = {});

  const Model& model() const { return *model_; }
  const ModelConfig& config() const { return model_->config; }
  const Calibration& calibration() const { return model_->calibration; }
  torch::Device device() const { return device_; }
  Precision precision() const { return precision_; }
  int64_t image_size() const { return model_->config.image_size; }

  // Frames [N, H, W, C] (uint8 or float in 0..1, any device) -> maps and scores.
  Detection detect(const torch::Tensor& frames, const ChannelMap& map = {});
  // Already preprocessed input [N, 3, S, S] on any device.
  Detection detect_preprocessed(const torch::Tensor& x);

 private:
  std::shared_ptr<Model> model_;
  torch::Device device_;
  Precision precision_;
  torch::ScalarType dtype_;
};

}  // namespace pefm
