#include "pefm/mapping_net.h"

#include <tuple>

#include <torch/torch.h>

#include "nn_util.h"

namespace pefm {

namespace {

namespace nn = torch::nn;

nn::Conv2d conv1x1(int64_t in, int64_t out) { return nn::Conv2d(nn::Conv2dOptions(in, out, 1)); }

// 1x1 conv + BN + ReLU, as Sequential so the keys read `.0.weight`, `.1.running_mean`.
Seq cbr(int64_t in, int64_t out) {
  Seq seq;
  seq->push_back(conv1x1(in, out));
  seq->push_back(nn::BatchNorm2d(out));
  seq->push_back(nn::ReLU());
  return seq;
}

// Layers are created one statement at a time, never as arguments of one call: argument
// evaluation order is unspecified (GCC and Clang differ), and each convolution draws its
// initial weights from the global generator, so the same seed must give the same model
// whichever compiler built pefm.
nn::Sequential encoder(int64_t in, int64_t c, int64_t latent) {
  nn::Sequential seq;
  seq->push_back(cbr(in, c / 2 + latent));
  seq->push_back(cbr(c / 2 + latent, 2 * latent));
  return seq;
}

nn::Sequential decoder(int64_t c, int64_t latent) {
  nn::Sequential seq;
  seq->push_back(cbr(latent, 2 * latent));
  seq->push_back(cbr(2 * latent, c / 2 + latent));
  seq->push_back(conv1x1(c / 2 + latent, c));
  return seq;
}

}  // namespace

DualMappingImpl::DualMappingImpl(int64_t cs, int64_t ct, int64_t in_s, int64_t in_t,
                                 int64_t latent) {
  encoder_s = register_module("encoder_s", encoder(in_s, cs, latent));
  encoder_t = register_module("encoder_t", encoder(in_t, ct, latent));
  shared = register_module("shared", conv1x1(2 * latent, latent));
  decoder_s = register_module("decoder_s", decoder(cs, latent));
  decoder_t = register_module("decoder_t", decoder(ct, latent));
}

std::pair<torch::Tensor, torch::Tensor> DualMappingImpl::forward(const torch::Tensor& enc_s,
                                                                 const torch::Tensor& enc_t) {
  auto s_hat = decoder_s->forward(shared->forward(encoder_t->forward(enc_t)));
  auto t_hat = decoder_t->forward(shared->forward(encoder_s->forward(enc_s)));
  return {s_hat, t_hat};
}

std::map<std::string, std::vector<int64_t>> dual_mapping_shapes(int64_t cs, int64_t ct, int64_t in_s,
                                                                int64_t in_t, int64_t latent) {
  std::map<std::string, std::vector<int64_t>> shapes;
  const auto conv = [&](const std::string& name, int64_t in, int64_t out) {
    shapes[name + ".weight"] = {out, in, 1, 1};
    shapes[name + ".bias"] = {out};
  };
  const auto cbr_shapes = [&](const std::string& name, int64_t in, int64_t out) {
    conv(name + ".0", in, out);
    for (const char* p : {".1.weight", ".1.bias", ".1.running_mean", ".1.running_var"}) shapes[name + p] = {out};
    shapes[name + ".1.num_batches_tracked"] = {};
  };
  for (const auto& [side, c, in] : {std::tuple<const char*, int64_t, int64_t>{"s", cs, in_s}, {"t", ct, in_t}}) {
    const std::string enc = std::string("encoder_") + side, dec = std::string("decoder_") + side;
    cbr_shapes(enc + ".0", in, c / 2 + latent);
    cbr_shapes(enc + ".1", c / 2 + latent, 2 * latent);
    cbr_shapes(dec + ".0", latent, 2 * latent);
    cbr_shapes(dec + ".1", 2 * latent, c / 2 + latent);
    conv(dec + ".2", c / 2 + latent, c);
  }
  conv("shared", 2 * latent, latent);
  return shapes;
}

}  // namespace pefm
