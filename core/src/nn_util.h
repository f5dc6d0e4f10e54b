// Internal: a Sequential that can be nested inside another one. LibTorch's AnyModule only
// stores modules whose forward() is not a template, which Sequential's is.
#pragma once

#include <torch/nn/modules/container/sequential.h>

namespace pefm {

class SeqImpl : public torch::nn::SequentialImpl {
 public:
  using torch::nn::SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor x) { return torch::nn::SequentialImpl::forward(x); }
};
TORCH_MODULE(Seq);

}  // namespace pefm
