// Decoded images <-> LibTorch tensors for the tools.
#pragma once

#include <torch/types.h>

#include "pefm-io/image_io.h"

namespace pefm {
namespace cli {

// Decoded image as a [H, W, C] uint8 tensor sharing nothing with `img`.
torch::Tensor to_tensor(const io::Image& img);
// [H, W, C] uint8 tensor (C = 1 or 3) back to an image.
io::Image to_image(const torch::Tensor& hwc);

}  // namespace cli
}  // namespace pefm
