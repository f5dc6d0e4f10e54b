// 2-D sinusoidal position code of the authors' PEFM_AD.py (docs/architecture.md, step 4).
#pragma once

#include <cstdint>

#include <torch/types.h>

#include "pefm/config.h"

namespace pefm {

// A [d, h, w] float tensor: channels [0, d/2) encode the column index, [d/2, d) the row
// index, sin on even and cos on odd channels, frequencies exp(-2i ln(10000) / (d/2)).
// Requires d > 0 divisible by 4, h > 0, w > 0.
torch::Tensor position_encoding(int64_t d, int64_t h, int64_t w);

// Input of the mapping network for L2-normalised features `f` [N, D, H, W] and a code
// `pe` [D, H, W]: f + pe (kAdd), [f, pe] along channels (kConcat), f (kNone).
torch::Tensor apply_position_encoding(const torch::Tensor& f, const torch::Tensor& pe,
                                      PeMode mode);

// Channels the mapping network sees for D-channel features under `mode`.
int64_t encoded_channels(int64_t d, PeMode mode);

}  // namespace pefm
