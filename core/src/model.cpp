#include "pefm/model.h"

#include <chrono>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "anomaly_map_op.h"
#include "nn_util.h"
#include "pefm/device.h"
#include "pefm/position_encoding.h"
#include "pefm/state_dict.h"


namespace pefm {

PefmNetImpl::PefmNetImpl(const ModelConfig& config) : config_(config) {
  config_.validate();
  source_ = register_module("source", make_backbone(config_.source_arch));
  target_ = register_module("target", make_backbone(config_.target_arch));
  mapping_ = register_module("mapping", torch::nn::ModuleList());
  const auto cs = source_->tap_channels();
  const auto ct = target_->tap_channels();
  for (int k = 0; k < 3; ++k) {
    mapping_->push_back(DualMapping(cs[k], ct[k], encoded_channels(cs[k], config_.pe),
                                   encoded_channels(ct[k], config_.pe), config_.latent[k]));
  }
  for (auto& p : source_->parameters()) p.set_requires_grad(false);
  for (auto& p : target_->parameters()) p.set_requires_grad(false);
  source_->eval();
  target_->eval();
}

void PefmNetImpl::train(bool on) {
  torch::nn::Module::train(on);
  source_->eval();
  target_->eval();
}

torch::Tensor l2_normalize_channels(const torch::Tensor& features) {
  const double eps = features.scalar_type() == torch::kHalf ? 6.103515625e-05 : 1e-12;  // fp16's smallest normal
  return torch::nn::functional::normalize(features, torch::nn::functional::NormalizeFuncOptions().p(2).dim(1).eps(eps));
}

Features PefmNetImpl::extract(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  Features f;
  for (auto& t : source_->forward_taps(x)) f.source.push_back(l2_normalize_channels(t));
  for (auto& t : target_->forward_taps(x)) f.target.push_back(l2_normalize_channels(t));
  for (int k = 0; k < 3; ++k) {
    TORCH_CHECK(f.source[k].sizes().slice(2) == f.target[k].sizes().slice(2),
                "source and target taps of scale ", k, " differ in size: ", f.source[k].sizes(),
                " vs ", f.target[k].sizes());
  }
  return f;
}

torch::Tensor PefmNetImpl::position_code(bool source_side, int k, int64_t h, int64_t w) {
  const auto key = std::make_tuple(source_side, k, h, w);
  std::lock_guard<std::mutex> lock(pe_mutex_);
  auto it = pe_cache_.find(key);
  if (it == pe_cache_.end()) {
    const auto d = (source_side ? source_ : target_)->tap_channels()[k];
    const auto ref = source_->parameters().front();
    it = pe_cache_.emplace(key, position_encoding(d, h, w).to(ref.device(), ref.scalar_type())).first;
  }
  return it->second;
}

std::pair<torch::Tensor, torch::Tensor> PefmNetImpl::map_scale(int k, const torch::Tensor& ns,
                                                               const torch::Tensor& nt) {
  const auto h = ns.size(2), w = ns.size(3);
  auto in_s = ns, in_t = nt;
  if (config_.pe != PeMode::kNone) {
    in_s = apply_position_encoding(ns, position_code(true, k, h, w).to(ns.scalar_type()), config_.pe);
    in_t = apply_position_encoding(nt, position_code(false, k, h, w).to(nt.scalar_type()), config_.pe);
  }
  return mapping_[k]->as<DualMappingImpl>()->forward(in_s, in_t);
}

namespace {

// Stopwatch that synchronises the device before reading the clock, so asynchronous CUDA
// work is charged to the stage that queued it.
class StageClock {
 public:
  StageClock(StageTimes* times, const torch::Device& device) : times_(times), device_(device) { restart(); }
  void charge(double StageTimes::*stage) {
    if (!times_) return;
    if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
    const auto now = std::chrono::steady_clock::now();
    times_->*stage += std::chrono::duration<double, std::milli>(now - start_).count();
    start_ = now;
  }
  void restart() {
    if (times_ && device_.is_cuda()) torch::cuda::synchronize(device_.index());
    start_ = std::chrono::steady_clock::now();
  }

 private:
  StageTimes* times_;
  torch::Device device_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

void PefmNetImpl::fold_batchnorm() {
  if (folded_) return;
  eval();
  source_->fold_batchnorm();
  target_->fold_batchnorm();
  fold_sequences(*mapping_);
  folded_ = true;
}

torch::Tensor PefmNetImpl::anomaly_map(const torch::Tensor& x) {
  StageClock clock(stage_times_, x.device());
  const auto features = extract(x);
  clock.charge(&StageTimes::backbones);
  std::array<ScaleMaps, 3> scales;
  for (int k = 0; k < 3; ++k) {
    auto [s_hat, t_hat] = map_scale(k, features.source[k], features.target[k]);
    scales[k] = {s_hat, features.source[k], t_hat, features.target[k]};
  }
  clock.charge(&StageTimes::mapping);
  auto fused = fused_anomaly_map(scales, config_.fusion, x.size(2), x.size(3));
  clock.charge(&StageTimes::fuse);
  return fused;
}

Model Model::create(const ModelConfig& config, const std::string& source_weights,
                    const std::string& target_weights) {
  Model m;
  m.config = config;
  m.net = PefmNet(config);
  const auto load = [](Backbone& b, const std::string& path) {
    if (path.empty()) return;
    load_state_dict(b, read_state_dict(path), path,
                    [&b](const std::string& key) { return b.is_tail_key(key); });
  };
  load(m.net->source(), source_weights);
  load(m.net->target(), target_weights);
  m.net->eval();
  return m;
}

}  // namespace pefm
