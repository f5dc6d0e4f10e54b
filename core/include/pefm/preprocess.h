// Frames to network input (docs/architecture.md, step 1): channel selection, resize to S x S (PIL's
// Lanczos by default, as the authors' runs; or antialiased bilinear: config.h, Resize),
// [0, 1] scaling, ImageNet normalisation, gray replicated to three channels.
#pragma once

#include <array>
#include <cstdint>

#include <torch/types.h>

#include "pefm/config.h"

namespace pefm {

// Where R, G and B sit among a packed pixel's channels; gray frames have one channel.
struct ChannelMap {
  int channels = 3;                // 1 (gray), 3 or 4
  std::array<int, 3> rgb = {0, 1, 2};

  static ChannelMap rgb_order() { return {3, {0, 1, 2}}; }
  static ChannelMap bgr_order() { return {3, {2, 1, 0}}; }
  static ChannelMap rgba_order() { return {4, {0, 1, 2}}; }
  static ChannelMap bgra_order() { return {4, {2, 1, 0}}; }
  static ChannelMap gray() { return {1, {0, 0, 0}}; }
};

// frames: [N, H, W, C] uint8 (0..255) or float (0..1), on CPU or CUDA.
// Returns [N, 3, size, size] of `dtype` on the frames' device. On CUDA the kernels do it
// (Lanczos in PIL's two passes, bilinear fused); the CPU path uses its own loops (Lanczos)
// or LibTorch ops (bilinear). Both compute the same thing (Lanczos: the same integers).
// Float frames with NaN or Inf: refused, except where the CUDA kernels run (refusing would
// wait for the GPU): their input is NaN there, which the detector scores at the maximum
// and flags.
torch::Tensor preprocess(const torch::Tensor& frames, const ChannelMap& map, int64_t size,
                         torch::ScalarType dtype = torch::kFloat32, Resize resize = Resize::kLanczos);

}  // namespace pefm
