// Training the mapping networks on cached backbone features (docs/architecture.md, step 6).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/optim/adam.h>
#include <torch/types.h>

#include "pefm/model.h"

namespace pefm {

struct TrainOptions {
  int64_t batch_size = 16;
  double lr = 3e-4;
  double weight_decay = 1e-5;
  uint64_t seed = 888;
  // Keep cached features in fp16 (halves memory; the maths stays fp32).
  bool half_cache = false;
};

struct EpochResult {
  int64_t epoch = 0;                 // 1-based number of the epoch just finished
  std::array<double, 3> loss = {};   // mean loss per scale over the epoch
  bool completed = true;             // false when the callback stopped it early
};

// Called after every batch with (batches done, batches in the epoch); return false to
// stop: the epoch then does not count and the caller should not save its weights.
using BatchCallback = std::function<bool(int64_t done, int64_t total)>;

class Trainer {
 public:
  // Trains `model.net`'s mapping networks on `device`; the backbones stay frozen.
  Trainer(Model& model, const TrainOptions& options, torch::Device device);

  // Computes and caches normalised features of a preprocessed batch [N, 3, S, S].
  void add_images(const torch::Tensor& x);
  int64_t cached_images() const;
  // Drops the cache (e.g. after training, before calibration).
  void clear_cache();
  // Trains on `other`'s cached features (shared, not copied) instead of extracting them
  // again: models that differ only in what sits on top of the backbones (the position
  // code, the latent widths) train on one extraction. Both models must have been created
  // from the same backbone weights; their architectures and image size are checked.
  void share_cache(const Trainer& other);

  // One pass over the cache in a seeded random order, one Adam per scale.
  EpochResult train_epoch(const BatchCallback& on_batch = nullptr);
  int64_t epochs_done() const { return epochs_done_; }

  // Optimiser and progress state for --resume (tensors by name).
  std::map<std::string, torch::Tensor> state() const;
  void restore(const std::map<std::string, torch::Tensor>& state);

 private:
  Model& model_;
  TrainOptions options_;
  torch::Device device_;
  std::array<std::vector<torch::Tensor>, 3> cache_s_, cache_t_;
  std::vector<std::unique_ptr<torch::optim::Adam>> optimizers_;
  int64_t epochs_done_ = 0;
};

}  // namespace pefm
