// Internal: module helpers shared by the backbones and the mapping networks.
#pragma once

#include <vector>

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

namespace pefm {

// Folds an eval-mode BatchNorm into the convolution before it: w' = w * g / s,
// b' = (b - mean) * g / s + beta with s = sqrt(var + eps). The conv gains a bias if it
// had none; the BatchNorm must then be skipped by the caller.
void fold_conv_bn(torch::nn::Conv2dImpl& conv, const torch::nn::BatchNorm2dImpl& bn);

// A Sequential that can be nested inside another one (LibTorch's AnyModule only stores
// modules whose forward() is not a template, which Sequential's is), and whose
// Conv2d -> BatchNorm2d pairs can be folded for inference.
class SeqImpl : public torch::nn::SequentialImpl {
 public:
  using torch::nn::SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor x);
  // Folds every Conv2d directly followed by a BatchNorm2d; the BatchNorm is skipped after.
  void fold_batchnorm();
  // Whether forward() skips child i (a BatchNorm folded into the convolution before it).
  bool skips(size_t i) const { return i < skip_.size() && skip_[i]; }

 private:
  std::vector<bool> skip_;
};
TORCH_MODULE(Seq);

// Folds every Seq inside `module` (recursively).
void fold_sequences(torch::nn::Module& module);

}  // namespace pefm
