// Internal: method step 7 (docs/architecture.md) as one operation with a CPU and a CUDA twin -- the
// per-scale residual 0.5 * (|s_hat - s|^2 + |t_hat - t|^2) summed over channels in
// float32, bilinear upsampling (align_corners=false) to the input size, and the fusion of
// the three scales.
#pragma once

#include <array>
#include <cstdint>

#include <torch/types.h>

#include "pefm/config.h"

namespace pefm {

// One scale's normalised features and their mappings, [N, c, h, w] each (c: the source
// side's channels for s_hat and s, the target side's for t_hat and t).
struct ScaleMaps {
  torch::Tensor s_hat, s, t_hat, t;
};

// [N, height, width] float32 on the inputs' device. On CUDA with a square output, the
// fused kernels (cuda/anomaly_map.cu), which take float, half or bf16 inputs of one type
// and refuse others (c10::Error); everything else runs through LibTorch operators. Both
// compute the same map.
torch::Tensor fused_anomaly_map(const std::array<ScaleMaps, 3>& scales, Fusion fusion, int64_t height,
                                int64_t width);

}  // namespace pefm
