// The dual feature-mapping network of one scale (docs/architecture.md, step 5): two
// encoders, one shared coder, two decoders, all 1x1 convolutions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

namespace pefm {

class DualMappingImpl : public torch::nn::Module {
 public:
  // cs / ct: source and target feature channels; in_s / in_t: channels entering the
  // encoders (cs, ct, or twice that with concatenated position codes); latent: L.
  DualMappingImpl(int64_t cs, int64_t ct, int64_t in_s, int64_t in_t, int64_t latent);

  // Returns {F_s_hat, F_t_hat}: source features predicted from the (encoded) target
  // features and target features predicted from the (encoded) source features.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& enc_s,
                                                  const torch::Tensor& enc_t);

  torch::nn::Sequential encoder_s{nullptr}, encoder_t{nullptr};
  torch::nn::Conv2d shared{nullptr};
  torch::nn::Sequential decoder_s{nullptr}, decoder_t{nullptr};
};
TORCH_MODULE(DualMapping);

// Names and shapes of every parameter and buffer DualMapping(cs, ct, in_s, in_t, latent)
// has, computed without building it: a model file's stored tensors are checked against
// them before its widths are allowed to allocate anything.
std::map<std::string, std::vector<int64_t>> dual_mapping_shapes(int64_t cs, int64_t ct, int64_t in_s,
                                                                int64_t in_t, int64_t latent);

}  // namespace pefm
