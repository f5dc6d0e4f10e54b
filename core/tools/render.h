// Side-by-side evaluation pictures for pefm-eval --save-maps.
#pragma once

#include <torch/types.h>

#include "pefm-io/image_io.h"

namespace pefm {
namespace cli {

// Three panels of `panel` px: the image, the image with the ground-truth outline (green),
// and the heat map (`heat` in 0..1, jet colours) blended over the image with the outline of
// the areas at or above `outline_level` (white; pefm-eval: the element's region level).
// `image`: [H, W, 3] uint8; `mask`: [h, w] bool (any size, may be all false); `heat`:
// [h, w] float. Captions name each panel and the score.
io::Image side_by_side(const torch::Tensor& image, const torch::Tensor& mask, const torch::Tensor& heat,
                       double score, double outline_level, int panel = 256);

}  // namespace cli
}  // namespace pefm
