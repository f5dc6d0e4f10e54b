#include "pefm/backbone.h"

#include <stdexcept>

#include "backbone_impl.h"

namespace pefm {

int64_t Backbone::tap_size(int k, int64_t size) const {
  // Every stride-2 stage of these networks is a 3x3 conv or pool with padding 1:
  // out = floor((in - 1) / 2) + 1. Four of them before tap 0, one more per tap.
  int64_t s = size;
  for (int i = 0; i < 2 + k; ++i) s = (s - 1) / 2 + 1;
  return s;
}

const std::vector<std::string>& supported_backbones() {
  static const std::vector<std::string> archs = {"resnet18", "resnet34", "resnet50",
                                                 "wide_resnet50_2", "mobilenet_v2"};
  return archs;
}

bool is_supported_backbone(const std::string& arch) {
  for (const auto& a : supported_backbones()) {
    if (a == arch) return true;
  }
  return false;
}

std::shared_ptr<Backbone> make_backbone(const std::string& arch, BackboneHead head) {
  const bool full = head == BackboneHead::kClassifier;
  if (arch == "resnet18") return make_resnet(arch, ResNetKind::kBasic, {2, 2, 2, 2}, 64, full);
  if (arch == "resnet34") return make_resnet(arch, ResNetKind::kBasic, {3, 4, 6, 3}, 64, full);
  if (arch == "resnet50") return make_resnet(arch, ResNetKind::kBottleneck, {3, 4, 6, 3}, 64, full);
  if (arch == "wide_resnet50_2")
    return make_resnet(arch, ResNetKind::kBottleneck, {3, 4, 6, 3}, 128, full);
  if (arch == "mobilenet_v2") return make_mobilenet_v2(full);
  std::string list;
  for (const auto& a : supported_backbones()) list += (list.empty() ? "" : ", ") + a;
  throw std::invalid_argument("unknown backbone '" + arch + "' (supported: " + list + ")");
}

std::string backbone_tap_names(const std::string& arch) {
  return arch == "mobilenet_v2" ? "features.3,features.6,features.13" : "layer1,layer2,layer3";
}

std::array<int64_t, 3> backbone_tap_channels(const std::string& arch) {
  if (arch == "resnet18" || arch == "resnet34") return {64, 128, 256};
  if (arch == "resnet50" || arch == "wide_resnet50_2") return {256, 512, 1024};
  if (arch == "mobilenet_v2") return {24, 32, 96};
  return make_backbone(arch)->tap_channels();  // throws for unknown names
}

BackboneStateSize backbone_state_size(const std::string& arch) {
  // Parameters and buffers of the kTapsOnly network (test_backbones checks these against
  // the built modules).
  if (arch == "resnet18") return {90, 2787279};
  if (arch == "resnet34") return {174, 8180189};
  if (arch == "resnet50") return {258, 8573931};
  if (arch == "wide_resnet50_2") return {258, 24902123};
  if (arch == "mobilenet_v2") return {234, 558695};
  make_backbone(arch);  // throws for unknown names
  throw std::logic_error("backbone_state_size: no entry for " + arch);
}

}  // namespace pefm
