// MobileNetV2 (width 1.0) with torchvision's module names: `features.N...`, `classifier.1`.
#include <torch/torch.h>

#include "backbone_impl.h"
#include "nn_util.h"
#include "onnx_graph.h"

namespace pefm {

namespace {

namespace nn = torch::nn;

// torchvision's Conv2dNormActivation: Sequential(conv, bn, relu6) -> keys .0 / .1.
Seq conv_bn_relu6(int64_t in, int64_t out, int64_t k, int64_t stride = 1,
                             int64_t groups = 1) {
  return Seq(
      nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding((k - 1) / 2).groups(groups).bias(false)),
      nn::BatchNorm2d(out), nn::ReLU6());
}

struct InvertedResidualImpl : nn::Module {
  InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expand)
      : use_residual(stride == 1 && in == out) {
    const int64_t hidden = in * expand;
    nn::Sequential seq;
    if (expand != 1) seq->push_back(conv_bn_relu6(in, hidden, 1));
    seq->push_back(conv_bn_relu6(hidden, hidden, 3, stride, hidden));
    seq->push_back(nn::Conv2d(nn::Conv2dOptions(hidden, out, 1).bias(false)));
    seq->push_back(nn::BatchNorm2d(out));
    conv = register_module("conv", seq);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    return use_residual ? x + conv->forward(x) : conv->forward(x);
  }

  bool use_residual;
  nn::Sequential conv{nullptr};
};
TORCH_MODULE(InvertedResidual);

class MobileNetV2 final : public Backbone {
 public:
  explicit MobileNetV2(bool full) : Backbone("mobilenet_v2") {
    // t (expansion), c (channels), n (repeats), s (first stride) from the paper / torchvision.
    const int64_t settings[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                                    {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    const size_t last = full ? 18 : 13;  // features[13] is the deepest tap
    features = nn::Sequential();
    features->push_back(conv_bn_relu6(3, 32, 3, 2));
    int64_t in = 32;
    for (const auto& s : settings) {
      for (int64_t i = 0; i < s[2] && features->size() <= last; ++i) {
        features->push_back(InvertedResidual(in, s[1], i == 0 ? s[3] : 1, s[0]));
        in = s[1];
      }
    }
    if (full) {
      features->push_back(conv_bn_relu6(320, 1280, 1));
      classifier = nn::Sequential(nn::Dropout(0.2), nn::Linear(1280, 1000));
    }
    register_module("features", features);
    if (full) register_module("classifier", classifier);
  }

  std::array<int64_t, 3> tap_channels() const override { return {24, 32, 96}; }

  std::vector<torch::Tensor> forward_taps(const torch::Tensor& x) override {
    std::vector<torch::Tensor> taps;
    auto y = x;
    size_t i = 0;
    for (auto& layer : *features) {
      y = layer.forward(y);
      if (i == 3 || i == 6 || i == 13) taps.push_back(y);
      if (++i > 13) break;
    }
    return taps;
  }

  std::array<std::string, 3> onnx_taps(onnx::Graph& g, const std::string& input,
                                       const std::string& prefix) override {
    std::array<std::string, 3> taps;
    auto y = input;
    for (size_t i = 0; i <= 13; ++i) {
      const auto name = prefix + ".features." + std::to_string(i);
      auto& layer = *features->ptr(i);
      if (auto* block = layer.as<InvertedResidualImpl>()) {
        const auto out = g.module(y, *block->conv, name + ".conv");
        y = block->use_residual ? g.node("Add", {y, out}, name + ".add") : out;
      } else {
        y = g.module(y, layer, name);
      }
      if (i == 3) taps[0] = y;
      if (i == 6) taps[1] = y;
      if (i == 13) taps[2] = y;
    }
    return taps;
  }

  torch::Tensor classify(const torch::Tensor& x) override {
    TORCH_CHECK(!classifier.is_empty(), "mobilenet_v2 was built without its classifier");
    auto y = features->forward(x);
    return classifier->forward(torch::adaptive_avg_pool2d(y, {1, 1}).flatten(1));
  }

  void fold_batchnorm() override { fold_sequences(*this); }

  bool is_tail_key(const std::string& key) const override {
    if (key.rfind("classifier.", 0) == 0) return true;
    if (key.rfind("features.", 0) != 0) return false;
    const auto dot = key.find('.', 9);
    const auto index = key.substr(9, dot == std::string::npos ? std::string::npos : dot - 9);
    if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos) return false;
    return std::stoi(index) > 13 && std::stoi(index) <= 18;
  }

 private:
  nn::Sequential features{nullptr};
  nn::Sequential classifier{nullptr};
};

}  // namespace

std::shared_ptr<Backbone> make_mobilenet_v2(bool full) {
  return std::make_shared<MobileNetV2>(full);
}

}  // namespace pefm
