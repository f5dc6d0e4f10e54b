// A complete PEFM model: two backbones, three dual mapping networks, calibration and
// the settings that produced it. `model_file.h` reads and writes it.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/types.h>

#include "pefm/backbone.h"
#include "pefm/calibration.h"
#include "pefm/config.h"
#include "pefm/mapping_net.h"

namespace pefm {

// Milliseconds spent in each stage of a forward pass, device-synchronised: an observer that
// pefm-bench attaches (Detector::time_stages); the stages add to it while it is attached.
// `mapping` is the mapping networks alone; `fuse` is step 7 whole (residual, upsampling,
// fusion), on the CPU as on CUDA.
struct StageTimes {
  double preprocess = 0, backbones = 0, mapping = 0, fuse = 0, download = 0;
};

// Features divided by their L2 norm over channels (docs/architecture.md, step 3), the
// norm at least the smallest normal number of their dtype: an all-zero feature vector
// stays zero in fp16 too, where the usual 1e-12 rounds to 0 and 0 / 0 made the frame NaN.
torch::Tensor l2_normalize_channels(const torch::Tensor& features);

// L2-normalised features of both backbones at the three taps.
struct Features {
  std::vector<torch::Tensor> source;  // 3 x [N, cs_k, h_k, w_k]
  std::vector<torch::Tensor> target;  // 3 x [N, ct_k, h_k, w_k]
};

class PefmNetImpl : public torch::nn::Module {
 public:
  explicit PefmNetImpl(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }

  // Backbone features of a preprocessed batch [N, 3, S, S], L2-normalised per pixel.
  Features extract(const torch::Tensor& x);
  // F_s_hat and F_t_hat of scale k from normalised features (position code added here).
  std::pair<torch::Tensor, torch::Tensor> map_scale(int k, const torch::Tensor& ns,
                                                    const torch::Tensor& nt);
  // Fused anomaly map [N, S, S] of a preprocessed batch (docs/architecture.md, step 7).
  torch::Tensor anomaly_map(const torch::Tensor& x);
  // While `sink` is set, anomaly_map() synchronises the device after each stage and adds
  // the milliseconds to it (slower; for benchmarks). nullptr detaches it.
  void time_stages(StageTimes* sink) { stage_times_ = sink; }

  // Folds every BatchNorm into its convolution (backbones and mapping networks) for
  // inference: same outputs, fewer passes over memory. The net can then no longer be
  // trained or saved.
  void fold_batchnorm();

  // Backbones stay in eval mode (frozen BN) whatever train() says about the mapping nets.
  void train(bool on = true) override;

  // The parts, for the trainer (mapping parameters), the tools (tap geometry) and tests
  // (deterministic weights). Their registered names ("source", "target", "mapping.<k>")
  // are the model file's tensor keys.
  Backbone& source() { return *source_; }
  Backbone& target() { return *target_; }
  const Backbone& source() const { return *source_; }
  const Backbone& target() const { return *target_; }
  // The dual mapping network of scale k (0..2), and the three as one module.
  torch::nn::Module& mapping(int k) { return *mapping_[k]; }
  torch::nn::Module& mappings() { return *mapping_; }

 private:
  torch::Tensor position_code(bool source_side, int k, int64_t h, int64_t w);

  std::shared_ptr<Backbone> source_, target_;
  torch::nn::ModuleList mapping_{nullptr};
  ModelConfig config_;
  bool folded_ = false;
  StageTimes* stage_times_ = nullptr;
  // Regenerated, never stored (docs/architecture.md, step 4); keyed by side, scale and
  // size. Guarded: detectors shared between elements run forward() from several streaming
  // threads.
  std::map<std::tuple<bool, int, int64_t, int64_t>, torch::Tensor> pe_cache_;
  std::mutex pe_mutex_;
};
TORCH_MODULE(PefmNet);

struct Model {
  ModelConfig config;
  PefmNet net{nullptr};
  Calibration calibration;
  // Settings pefm-train used (epochs, lr, data folders, ...), kept for provenance.
  std::map<std::string, std::string> training;

  // A model with freshly initialised mapping networks; backbone weights from the given
  // torchvision .pth files, or random (seeded by torch::manual_seed) when a path is empty.
  static Model create(const ModelConfig& config, const std::string& source_weights = "",
                      const std::string& target_weights = "");
};

}  // namespace pefm
