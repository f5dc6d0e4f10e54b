#include "pefm/detector.h"

#include <stdexcept>

#include <torch/torch.h>

#include "pefm/device.h"
#include "pefm/state_dict.h"

namespace pefm {

Detector::Detector(std::shared_ptr<Model> model, const DetectorOptions& options)
    : model_(std::move(model)),
      device_(resolve_device(options.device)),
      precision_(options.precision),
      dtype_(options.precision == Precision::kFp16 ? torch::kHalf : torch::kFloat32) {
  if (!model_ || !model_->net) throw std::invalid_argument("detector needs a model");
  if (precision_ == Precision::kFp16 && !device_.is_cuda()) {
    throw std::invalid_argument("precision fp16 needs a CUDA device, but device '" +
                                options.device + "' resolves to " + device_.str());
  }
  const auto ref = model_->net->parameters().front();
  if (ref.device() != device_ || ref.scalar_type() != dtype_) {
    // Never move the caller's model: other detectors may be using it where it is.
    auto copy = PefmNet(model_->config);
    load_state_dict(*copy, module_state(*model_->net), "model");
    move_module(*copy, device_, dtype_);
    auto moved = std::make_shared<Model>(*model_);
    moved->net = copy;
    model_ = std::move(moved);
  }
  model_->net->eval();
}

Detection Detector::detect(const torch::Tensor& frames, const ChannelMap& map) {
  torch::InferenceMode guard;
  return detect_preprocessed(preprocess(frames.to(device_), map, image_size(), dtype_));
}

Detection Detector::detect_preprocessed(const torch::Tensor& x) {
  torch::InferenceMode guard;
  const auto s = image_size();
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3 && x.size(2) == s && x.size(3) == s,
              "detector input must be [N, 3, ", s, ", ", s, "], got ", x.sizes());
  if (x.size(0) == 0) {
    auto opts = torch::TensorOptions().device(device_).dtype(torch::kFloat32);
    return {torch::empty({0, s, s}, opts), torch::empty({0}, opts)};
  }
  auto maps = model_->net->anomaly_map(x.to(device_, dtype_)).to(torch::kFloat32);
  // Non-finite values (fp16 overflow, NaN in the input) never leave the detector:
  // they become the largest finite score, which flags the frame instead of hiding it.
  maps = torch::nan_to_num(maps, std::numeric_limits<float>::max(),
                           std::numeric_limits<float>::max(), 0.0);
  auto scores = std::get<0>(maps.flatten(1).max(1));
  return {maps, scores};
}

}  // namespace pefm
