#include "nn_util.h"

#include <torch/torch.h>

namespace pefm {

void fold_conv_bn(torch::nn::Conv2dImpl& conv, const torch::nn::BatchNorm2dImpl& bn) {
  torch::NoGradGuard no_grad;
  const auto scale = bn.weight / torch::sqrt(bn.running_var + bn.options.eps());
  const auto shape = std::vector<int64_t>{-1, 1, 1, 1};
  conv.weight.mul_(scale.view(shape).to(conv.weight.dtype()));
  auto bias = (conv.bias.defined() ? conv.bias : torch::zeros_like(bn.running_mean));
  auto folded = ((bias - bn.running_mean) * scale + bn.bias).to(conv.weight.dtype());
  if (conv.bias.defined()) {
    conv.bias.copy_(folded);
  } else {
    // A bias-less Conv2d already holds an undefined "bias" parameter that cannot be
    // registered again; forward() reads the member, so set that (move_module moves it).
    conv.bias = folded;
  }
}

torch::Tensor SeqImpl::forward(torch::Tensor x) {
  size_t i = 0;
  for (auto& m : *this) {
    if (i >= skip_.size() || !skip_[i]) x = m.forward(x);
    ++i;
  }
  return x;
}

void SeqImpl::fold_batchnorm() {
  skip_.assign(size(), false);
  for (size_t i = 0; i + 1 < size(); ++i) {
    auto* conv = ptr(i)->as<torch::nn::Conv2dImpl>();
    auto* bn = ptr(i + 1)->as<torch::nn::BatchNorm2dImpl>();
    if (conv && bn && !skip_[i]) {
      fold_conv_bn(*conv, *bn);
      skip_[i + 1] = true;
    }
  }
}

void fold_sequences(torch::nn::Module& module) {
  for (auto& m : module.modules(/*include_self=*/true)) {
    if (auto* seq = m->as<SeqImpl>()) seq->fold_batchnorm();
  }
}

}  // namespace pefm
