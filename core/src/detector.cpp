#include "pefm/detector.h"

#include <stdexcept>

#include <chrono>
#include <mutex>
#include <optional>

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "pefm/calibration_maps.h"
#include "pefm/device.h"
#include "pefm/state_dict.h"

namespace pefm {

namespace {

struct Tf32State {
  std::mutex mutex;
  int holders = 0;
  bool cudnn = true, cublas = false;  // LibTorch's settings before the first holder
};

Tf32State& tf32_state() {
  static Tf32State state;
  return state;
}

}  // namespace

ExactFp32Scope::ExactFp32Scope() {
  auto& s = tf32_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.holders++ > 0) return;
  auto& ctx = at::globalContext();
  s.cudnn = ctx.allowTF32CuDNN();
  s.cublas = ctx.allowTF32CuBLAS();
  ctx.setAllowTF32CuDNN(false);
  ctx.setAllowTF32CuBLAS(false);
}

ExactFp32Scope::~ExactFp32Scope() {
  auto& s = tf32_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (--s.holders > 0) return;
  auto& ctx = at::globalContext();
  ctx.setAllowTF32CuDNN(s.cudnn);
  ctx.setAllowTF32CuBLAS(s.cublas);
}

Detector::Detector(std::shared_ptr<Model> model, const DetectorOptions& options)
    : model_(std::move(model)),
      device_(resolve_device(options.device)),
      precision_(options.precision),
      dtype_(options.precision == Precision::kFp16   ? torch::kHalf
             : options.precision == Precision::kBf16 ? torch::kBFloat16
                                                     : torch::kFloat32) {
  if (!model_ || !model_->net) throw std::invalid_argument("detector needs a model");
  if (precision_ == Precision::kFp16 && !device_.is_cuda()) {
    throw std::invalid_argument("precision fp16 needs a CUDA device, but device '" +
                                options.device + "' resolves to " + device_.str());
  }
  net_ = PefmNet(model_->config);
  load_state_dict(*net_, module_state(*model_->net), "model");
  net_->eval();
  if (options.fold_batchnorm) net_->fold_batchnorm();
  move_module(*net_, device_, dtype_);
  // On NHWC data LibTorch 2.x hands every convolution to oneDNN; on NCHW its stride-1 1x1
  // convolutions go through a plain GEMM, slower here in fp32 and in bf16.
  channels_last_ = uses_channels_last(device_, options.layout);
  if (channels_last_) {
    for (auto& p : net_->parameters()) {
      if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
    }
  }
  if (model_.use_count() == 1) model_->net = nullptr;  // nobody else needs the unfolded copy
}

namespace {

// Adds the time since `start` to the attached observer's preprocess stage (device synced).
void charge_preprocess(StageTimes* times, const torch::Device& device, std::chrono::steady_clock::time_point start) {
  if (!times) return;
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
  times->preprocess += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

void Detector::time_stages(StageTimes* sink) {
  stage_times_ = sink;
  net_->time_stages(sink);
}

Detection Detector::detect(const torch::Tensor& frames, const ChannelMap& map) {
  torch::InferenceMode guard;
  const auto start = std::chrono::steady_clock::now();
  auto x = preprocess(frames.to(device_), map, image_size(), dtype_, model_->config.resize);
  charge_preprocess(stage_times_, device_, start);
  return detect_preprocessed(x);
}

Detection Detector::detect(const std::vector<torch::Tensor>& frames, const ChannelMap& map) {
  torch::InferenceMode guard;
  std::vector<torch::Tensor> inputs;
  inputs.reserve(frames.size());
  const auto start = std::chrono::steady_clock::now();
  for (const auto& f : frames) inputs.push_back(preprocess(f.to(device_), map, image_size(), dtype_, model_->config.resize));
  charge_preprocess(stage_times_, device_, start);
  return detect_preprocessed(torch::cat(inputs));
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
  // fp32 means fp32: with TF32 the maps would differ from the CPU's by more than the
  // stated 1e-3 (fp16 and bf16 are the fast settings).
  std::optional<ExactFp32Scope> exact;
  if (device_.is_cuda() && precision_ == Precision::kFp32) exact.emplace();
  auto input = x.to(device_, dtype_);
  if (channels_last_) input = input.contiguous(torch::MemoryFormat::ChannelsLast);
  // Non-finite values never leave the detector (finite_scores: they flag the frame).
  auto maps = finite_scores(net_->anomaly_map(input));
  auto scores = std::get<0>(maps.flatten(1).max(1));
  return {maps, scores};
}

}  // namespace pefm
