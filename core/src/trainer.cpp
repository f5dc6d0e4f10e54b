#include "pefm/trainer.h"

#include <sstream>

#include <torch/torch.h>

#include "pefm/state_dict.h"

namespace pefm {

Trainer::Trainer(Model& model, const TrainOptions& options, torch::Device device)
    : model_(model), options_(options), device_(device) {
  TORCH_CHECK(options_.batch_size > 0, "batch size must be positive, got ", options_.batch_size);
  TORCH_CHECK(options_.lr > 0, "learning rate must be positive, got ", options_.lr);
  move_module(*model_.net, device_, torch::kFloat32);
  for (size_t k = 0; k < 3; ++k) {
    optimizers_.push_back(std::make_unique<torch::optim::Adam>(
        model_.net->mapping[k]->parameters(),
        torch::optim::AdamOptions(options_.lr).weight_decay(options_.weight_decay)));
  }
}

void Trainer::add_images(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  auto f = model_.net->extract(x.to(device_, torch::kFloat32));
  const auto dtype = options_.half_cache ? torch::kHalf : torch::kFloat32;
  for (int k = 0; k < 3; ++k) {
    cache_s_[k].push_back(f.source[k].to(dtype));
    cache_t_[k].push_back(f.target[k].to(dtype));
  }
}

int64_t Trainer::cached_images() const {
  int64_t n = 0;
  for (const auto& t : cache_s_[0]) n += t.size(0);
  return n;
}

void Trainer::clear_cache() {
  for (int k = 0; k < 3; ++k) {
    cache_s_[k].clear();
    cache_t_[k].clear();
  }
}

EpochResult Trainer::train_epoch(const BatchCallback& on_batch) {
  TORCH_CHECK(cached_images() > 0, "no training images were added");
  // Consolidate the cache once; later epochs find single tensors.
  for (int k = 0; k < 3; ++k) {
    if (cache_s_[k].size() > 1) {
      cache_s_[k] = {torch::cat(cache_s_[k])};
      cache_t_[k] = {torch::cat(cache_t_[k])};
    }
  }
  const int64_t n = cache_s_[0][0].size(0);
  // The order depends on (seed, epoch) only, so --resume replays the same epochs.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(options_.seed * 1000003ULL + epochs_done_);
  const auto perm = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong)).to(device_);
  model_.net->train();
  EpochResult result;
  result.epoch = epochs_done_ + 1;
  int64_t batches = 0;
  const int64_t total = (n + options_.batch_size - 1) / options_.batch_size;
  for (int64_t i = 0; i < n; i += options_.batch_size) {
    const auto idx = perm.slice(0, i, std::min(n, i + options_.batch_size));
    for (int k = 0; k < 3; ++k) {
      const auto ns = cache_s_[k][0].index_select(0, idx).to(torch::kFloat32);
      const auto nt = cache_t_[k][0].index_select(0, idx).to(torch::kFloat32);
      auto [s_hat, t_hat] = model_.net->map_scale(k, ns, nt);
      auto loss = torch::mse_loss(s_hat, ns) + torch::mse_loss(t_hat, nt);
      optimizers_[k]->zero_grad();
      loss.backward();
      optimizers_[k]->step();
      result.loss[k] += loss.item<double>();
    }
    ++batches;
    if (on_batch && !on_batch(batches, total)) {
      model_.net->eval();
      result.completed = false;
      return result;
    }
  }
  for (auto& l : result.loss) l /= static_cast<double>(batches);
  model_.net->eval();
  ++epochs_done_;
  return result;
}

std::map<std::string, torch::Tensor> Trainer::state() const {
  std::map<std::string, torch::Tensor> out;
  for (size_t k = 0; k < optimizers_.size(); ++k) {
    torch::serialize::OutputArchive archive;
    optimizers_[k]->save(archive);
    std::ostringstream bytes;
    archive.save_to(bytes);
    const auto s = bytes.str();
    out["optimizer." + std::to_string(k)] =
        torch::from_blob(const_cast<char*>(s.data()), {static_cast<int64_t>(s.size())}, torch::kUInt8).clone();
  }
  out["epochs_done"] = torch::tensor({epochs_done_}, torch::kInt64);
  return out;
}

void Trainer::restore(const std::map<std::string, torch::Tensor>& state) {
  for (size_t k = 0; k < optimizers_.size(); ++k) {
    const auto it = state.find("optimizer." + std::to_string(k));
    TORCH_CHECK(it != state.end(), "training state lacks optimizer ", k);
    const auto t = it->second.contiguous();
    std::istringstream bytes(std::string(static_cast<const char*>(t.data_ptr()), t.numel()));
    torch::serialize::InputArchive archive;
    archive.load_from(bytes, device_);
    optimizers_[k]->load(archive);
  }
  const auto it = state.find("epochs_done");
  TORCH_CHECK(it != state.end() && it->second.numel() == 1, "training state lacks epochs_done");
  epochs_done_ = it->second.item<int64_t>();
}

}  // namespace pefm
