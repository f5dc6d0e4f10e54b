// Internal: constructors of the concrete backbones.
#pragma once

#include <array>
#include <memory>
#include <string>

#include "pefm/backbone.h"

namespace pefm {

enum class ResNetKind { kBasic, kBottleneck };

std::shared_ptr<Backbone> make_resnet(const std::string& arch, ResNetKind kind,
                                      std::array<int, 4> blocks, int64_t base_width,
                                      bool full);
std::shared_ptr<Backbone> make_mobilenet_v2(bool full);

}  // namespace pefm
