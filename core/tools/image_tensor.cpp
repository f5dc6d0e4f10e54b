#include "image_tensor.h"

#include <torch/torch.h>

namespace pefm {
namespace cli {

torch::Tensor to_tensor(const io::Image& img) {
  return torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {img.height, img.width, img.channels},
                          torch::kUInt8)
      .clone();
}

io::Image to_image(const torch::Tensor& hwc) {
  const auto t = hwc.to(torch::kCPU, torch::kUInt8).contiguous();
  TORCH_CHECK(t.dim() == 3 && (t.size(2) == 1 || t.size(2) == 3), "to_image needs [H, W, 1|3], got ", t.sizes());
  io::Image img;
  img.height = static_cast<int>(t.size(0));
  img.width = static_cast<int>(t.size(1));
  img.channels = static_cast<int>(t.size(2));
  img.pixels.assign(t.data_ptr<uint8_t>(), t.data_ptr<uint8_t>() + t.numel());
  return img;
}

}  // namespace cli
}  // namespace pefm
