#include "pefm/trainer.h"

#include <sstream>
#include <stdexcept>
#include <type_traits>

#include <torch/torch.h>

#include "pefm/state_dict.h"

namespace pefm {

Trainer::Trainer(Model& model, const TrainOptions& options, torch::Device device)
    : model_(model), options_(options), device_(device) {
  TORCH_CHECK(options_.batch_size > 0, "batch size must be positive, got ", options_.batch_size);
  TORCH_CHECK(options_.lr > 0, "learning rate must be positive, got ", options_.lr);
  move_module(*model_.net, device_, torch::kFloat32);
  for (int k = 0; k < 3; ++k) {
    optimizers_.push_back(std::make_unique<torch::optim::Adam>(
        model_.net->mapping(k).parameters(),
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

void Trainer::share_cache(const Trainer& other) {
  const auto& a = model_.config;
  const auto& b = other.model_.config;
  TORCH_CHECK(a.source_arch == b.source_arch && a.target_arch == b.target_arch && a.image_size == b.image_size,
              "share_cache: features of ", b.source_arch, " -> ", b.target_arch, " at ", b.image_size,
              " px cannot train ", a.source_arch, " -> ", a.target_arch, " at ", a.image_size, " px");
  TORCH_CHECK(other.device_ == device_, "share_cache: features on ", other.device_, ", training on ", device_);
  cache_s_ = other.cache_s_;
  cache_t_ = other.cache_t_;
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

// The optimiser state is plain tensors in pefm's own container ("adam.<scale>.<param>.*"),
// never a TorchScript archive: a checkpoint is a file like any other, and reading it runs
// no loader that compiles code or trusts a stored size.
namespace {

// LibTorch keys an optimiser's per-parameter state by the address of the parameter's
// TensorImpl (a string in 1.13); written for either key type.
template <typename StateMap>
typename StateMap::key_type state_key(const StateMap&, const torch::Tensor& p) {
  if constexpr (std::is_same_v<typename StateMap::key_type, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

std::string adam_name(size_t scale, size_t param, const char* what) {
  return "adam." + std::to_string(scale) + "." + std::to_string(param) + "." + what;
}

// Bounds of the counters a checkpoint carries.
constexpr int64_t kMaxSteps = int64_t{1} << 40;
constexpr int64_t kMaxEpochs = 1000000;

}  // namespace

std::map<std::string, torch::Tensor> Trainer::state() const {
  std::map<std::string, torch::Tensor> out;
  for (size_t k = 0; k < optimizers_.size(); ++k) {
    auto& opt = *optimizers_[k];
    const auto& params = opt.param_groups().at(0).params();
    for (size_t i = 0; i < params.size(); ++i) {
      const auto it = opt.state().find(state_key(opt.state(), params[i]));
      if (it == opt.state().end()) continue;  // no step taken yet
      const auto& st = static_cast<const torch::optim::AdamParamState&>(*it->second);
      out[adam_name(k, i, "step")] = torch::tensor({static_cast<int64_t>(st.step())}, torch::kInt64);
      out[adam_name(k, i, "exp_avg")] = st.exp_avg().detach().cpu().clone();
      out[adam_name(k, i, "exp_avg_sq")] = st.exp_avg_sq().detach().cpu().clone();
    }
  }
  out["epochs_done"] = torch::tensor({epochs_done_}, torch::kInt64);
  return out;
}

void Trainer::restore(const std::map<std::string, torch::Tensor>& state) {
  if (state.count("optimizer.0")) {
    throw std::runtime_error(
        "the checkpoint was written by an older pefm (optimiser state as a TorchScript archive, which "
        "pefm no longer reads); start the training again without --resume");
  }
  const auto counter = [&](const std::string& name, int64_t max) {
    const auto it = state.find(name);
    TORCH_CHECK(it != state.end(), "training state lacks '", name, "'");
    const auto& t = it->second;
    TORCH_CHECK(t.scalar_type() == torch::kInt64 && t.numel() == 1, "training state '", name,
                "' is not one integer");
    const auto v = t.item<int64_t>();
    TORCH_CHECK(v >= 0 && v <= max, "training state '", name, "' = ", v, " is outside 0..", max);
    return v;
  };
  const int64_t epochs = counter("epochs_done", kMaxEpochs);
  // Check everything before changing anything.
  std::vector<std::pair<torch::Tensor, std::unique_ptr<torch::optim::AdamParamState>>> restored[3];
  size_t used = 1;  // epochs_done
  for (size_t k = 0; k < optimizers_.size(); ++k) {
    const auto& params = optimizers_[k]->param_groups().at(0).params();
    for (size_t i = 0; i < params.size(); ++i) {
      if (!state.count(adam_name(k, i, "step"))) continue;
      auto st = std::make_unique<torch::optim::AdamParamState>();
      st->step(counter(adam_name(k, i, "step"), kMaxSteps));
      for (const char* what : {"exp_avg", "exp_avg_sq"}) {
        const auto it = state.find(adam_name(k, i, what));
        TORCH_CHECK(it != state.end(), "training state lacks '", adam_name(k, i, what), "'");
        const auto& t = it->second;
        TORCH_CHECK(t.scalar_type() == torch::kFloat32 && t.sizes() == params[i].sizes(), "training state '",
                    adam_name(k, i, what), "' has ", t.scalar_type(), " ", t.sizes(), ", the parameter is ",
                    params[i].sizes());
        TORCH_CHECK(std::string(what) == "exp_avg" || (t >= 0).all().item<bool>(), "training state '",
                    adam_name(k, i, what), "' holds negative values");
        const auto value = t.to(device_).clone();
        if (std::string(what) == "exp_avg") {
          st->exp_avg(value);
        } else {
          st->exp_avg_sq(value);
        }
      }
      used += 3;
      restored[k].emplace_back(params[i], std::move(st));
    }
  }
  if (used != state.size()) {
    for (const auto& [name, t] : state) {
      TORCH_CHECK(name == "epochs_done" || name.rfind("adam.", 0) == 0, "training state has an unknown entry '",
                  name, "'");
    }
    TORCH_CHECK(false, "training state has entries for parameters this model does not have");
  }
  for (size_t k = 0; k < optimizers_.size(); ++k) {
    auto& opt = *optimizers_[k];
    opt.state().clear();
    for (auto& [param, st] : restored[k]) opt.state()[state_key(opt.state(), param)] = std::move(st);
  }
  epochs_done_ = epochs;
}

}  // namespace pefm
