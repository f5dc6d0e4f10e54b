// ResNet / Wide ResNet (torchvision v1.5: stride on the 3x3 conv of the bottleneck),
// with torchvision's module names so that its state dicts load by name.
#include <torch/torch.h>

#include "backbone_impl.h"
#include "nn_util.h"
#include "onnx_graph.h"

namespace pefm {

namespace {

namespace nn = torch::nn;

nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2).bias(false));
}

struct BlockImpl : nn::Module {
  BlockImpl(ResNetKind kind, int64_t in, int64_t planes, int64_t stride, int64_t base_width)
      : bottleneck(kind == ResNetKind::kBottleneck) {
    const int64_t expansion = bottleneck ? 4 : 1;
    if (bottleneck) {
      const int64_t width = planes * base_width / 64;
      conv1 = register_module("conv1", conv(in, width, 1));
      bn1 = register_module("bn1", nn::BatchNorm2d(width));
      conv2 = register_module("conv2", conv(width, width, 3, stride));
      bn2 = register_module("bn2", nn::BatchNorm2d(width));
      conv3 = register_module("conv3", conv(width, planes * expansion, 1));
      bn3 = register_module("bn3", nn::BatchNorm2d(planes * expansion));
    } else {
      conv1 = register_module("conv1", conv(in, planes, 3, stride));
      bn1 = register_module("bn1", nn::BatchNorm2d(planes));
      conv2 = register_module("conv2", conv(planes, planes, 3));
      bn2 = register_module("bn2", nn::BatchNorm2d(planes));
    }
    if (stride != 1 || in != planes * expansion) {
      downsample = register_module(
          "downsample",
          Seq(conv(in, planes * expansion, 1, stride), nn::BatchNorm2d(planes * expansion)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto y = torch::relu(norm(bn1, conv1(x)));
    if (bottleneck) {
      y = torch::relu(norm(bn2, conv2(y)));
      y = norm(bn3, conv3(y));
    } else {
      y = norm(bn2, conv2(y));
    }
    return torch::relu(y + (downsample ? downsample->forward(x) : x));
  }

  // forward() of the folded block as ONNX nodes.
  std::string onnx(onnx::Graph& g, const std::string& x, const std::string& name) {
    TORCH_CHECK(folded, "ONNX export of ", name, ": fold the BatchNorms first");
    auto y = g.node("Relu", {g.conv(x, *conv1, name + ".conv1")}, name + ".relu1");
    if (bottleneck) {
      y = g.node("Relu", {g.conv(y, *conv2, name + ".conv2")}, name + ".relu2");
      y = g.conv(y, *conv3, name + ".conv3");
    } else {
      y = g.conv(y, *conv2, name + ".conv2");
    }
    const auto skip = downsample ? g.module(x, *downsample, name + ".downsample") : x;
    return g.node("Relu", {g.node("Add", {y, skip}, name + ".add")}, name + ".relu");
  }

  void fold() {
    fold_conv_bn(*conv1, *bn1);
    fold_conv_bn(*conv2, *bn2);
    if (bottleneck) fold_conv_bn(*conv3, *bn3);
    if (downsample) downsample->fold_batchnorm();
    folded = true;
  }

  torch::Tensor norm(torch::nn::BatchNorm2d& bn, const torch::Tensor& y) { return folded ? y : bn(y); }

  bool bottleneck;
  bool folded = false;
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  Seq downsample{nullptr};
};
TORCH_MODULE(Block);

class ResNet final : public Backbone {
 public:
  ResNet(const std::string& arch, ResNetKind kind, std::array<int, 4> blocks,
         int64_t base_width, bool full)
      : Backbone(arch), expansion_(kind == ResNetKind::kBottleneck ? 4 : 1) {
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(64));
    int64_t in = 64;
    const int layers = full ? 4 : 3;
    for (int i = 0; i < layers; ++i) {
      const int64_t planes = int64_t{64} << i;
      nn::Sequential layer;
      for (int b = 0; b < blocks[i]; ++b) {
        layer->push_back(Block(kind, in, planes, (b == 0 && i > 0) ? 2 : 1, base_width));
        in = planes * expansion_;
      }
      layer_.push_back(register_module("layer" + std::to_string(i + 1), layer));
    }
    if (full) fc = register_module("fc", nn::Linear(in, 1000));
  }

  std::array<int64_t, 3> tap_channels() const override {
    return {64 * expansion_, 128 * expansion_, 256 * expansion_};
  }

  std::vector<torch::Tensor> forward_taps(const torch::Tensor& x) override {
    auto y = conv1(x);
    if (!folded_) y = bn1(y);
    y = torch::max_pool2d(torch::relu(y), 3, 2, 1);
    std::vector<torch::Tensor> taps;
    for (int i = 0; i < 3; ++i) {
      y = layer_[i]->forward(y);
      taps.push_back(y);
    }
    return taps;
  }

  std::array<std::string, 3> onnx_taps(onnx::Graph& g, const std::string& input,
                                       const std::string& prefix) override {
    TORCH_CHECK(folded_, "ONNX export of ", prefix, ": fold the BatchNorms first");
    auto y = g.node("Relu", {g.conv(input, *conv1, prefix + ".conv1")}, prefix + ".relu");
    using A = onnx::Attribute;
    y = g.node("MaxPool", {y}, prefix + ".maxpool",
               {A::Ints("kernel_shape", {3, 3}), A::Ints("strides", {2, 2}), A::Ints("pads", {1, 1, 1, 1})});
    std::array<std::string, 3> taps;
    for (size_t i = 0; i < 3; ++i) {
      const auto layer = prefix + ".layer" + std::to_string(i + 1);
      for (size_t b = 0; b < layer_[i]->size(); ++b) {
        y = layer_[i]->ptr(b)->as<BlockImpl>()->onnx(g, y, layer + "." + std::to_string(b));
      }
      taps[i] = y;
    }
    return taps;
  }

  torch::Tensor classify(const torch::Tensor& x) override {
    TORCH_CHECK(fc, arch(), " was built without its classifier");
    auto y = forward_taps(x).back();
    y = layer_[3]->forward(y);
    return fc(torch::adaptive_avg_pool2d(y, {1, 1}).flatten(1));
  }

  bool is_tail_key(const std::string& key) const override {
    return key.rfind("layer4.", 0) == 0 || key.rfind("fc.", 0) == 0;
  }

  void fold_batchnorm() override {
    fold_conv_bn(*conv1, *bn1);
    for (auto& m : modules(false)) {
      if (auto* block = m->as<BlockImpl>()) block->fold();
    }
    folded_ = true;
  }

 private:
  bool folded_ = false;
  int64_t expansion_;
  nn::Conv2d conv1{nullptr};
  nn::BatchNorm2d bn1{nullptr};
  std::vector<nn::Sequential> layer_;
  nn::Linear fc{nullptr};
};

}  // namespace

std::shared_ptr<Backbone> make_resnet(const std::string& arch, ResNetKind kind,
                                      std::array<int, 4> blocks, int64_t base_width,
                                      bool full) {
  return std::make_shared<ResNet>(arch, kind, blocks, base_width, full);
}

}  // namespace pefm
