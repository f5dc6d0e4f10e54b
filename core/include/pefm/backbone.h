// Frozen ImageNet backbones with torchvision's parameter names, exposing PEFM's three taps.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

namespace pefm {

namespace onnx {
class Graph;
}  // namespace onnx

enum class BackboneHead {
  kTapsOnly,    // layers up to the last tap; the rest of torchvision's keys are ignored
  kClassifier,  // the whole torchvision network, with its 1000-class classifier
};

class Backbone : public torch::nn::Module {
 public:
  explicit Backbone(std::string arch) : arch_(std::move(arch)) {}

  const std::string& arch() const { return arch_; }
  // Channel count of each tap (e.g. ResNet50: 256, 512, 1024).
  virtual std::array<int64_t, 3> tap_channels() const = 0;
  // Spatial size of tap k for an input of `size` pixels (the conv arithmetic, exactly).
  virtual int64_t tap_size(int k, int64_t size) const;

  // Feature maps of the three taps for a normalised NCHW batch.
  virtual std::vector<torch::Tensor> forward_taps(const torch::Tensor& x) = 0;
  // forward_taps as ONNX nodes (onnx_export.h) reading `input`, layers named
  // `prefix.<torchvision name>`: the value names of the three taps. After fold_batchnorm().
  virtual std::array<std::string, 3> onnx_taps(onnx::Graph& graph, const std::string& input,
                                               const std::string& prefix) = 0;
  // ImageNet logits; only for BackboneHead::kClassifier.
  virtual torch::Tensor classify(const torch::Tensor& x) = 0;

  // True for torchvision keys that belong to layers after the last tap (layer4, fc, ...):
  // they are legitimately present in a torchvision state dict and skipped when loading
  // a kTapsOnly backbone.
  virtual bool is_tail_key(const std::string& key) const = 0;

  // Folds every BatchNorm into its convolution, for inference only: the module then no
  // longer matches torchvision's keys and must not be trained or saved.
  virtual void fold_batchnorm() = 0;

 private:
  std::string arch_;
};

// Architectures: resnet18, resnet34, resnet50, wide_resnet50_2, mobilenet_v2.
const std::vector<std::string>& supported_backbones();
bool is_supported_backbone(const std::string& arch);
// Throws std::invalid_argument naming the unknown arch and listing the supported ones.
std::shared_ptr<Backbone> make_backbone(const std::string& arch,
                                        BackboneHead head = BackboneHead::kTapsOnly);
// Names of the layers whose outputs are the taps ("layer1,layer2,layer3",
// "features.3,features.6,features.13"), as recorded in model files.
std::string backbone_tap_names(const std::string& arch);
// Tap channels without building the network.
std::array<int64_t, 3> backbone_tap_channels(const std::string& arch);
// Number of parameter and buffer tensors, and their elements, of the kTapsOnly network,
// without building it: a model file must store exactly this much before pefm builds one.
struct BackboneStateSize {
  int64_t tensors = 0, elements = 0;
};
BackboneStateSize backbone_state_size(const std::string& arch);

}  // namespace pefm
