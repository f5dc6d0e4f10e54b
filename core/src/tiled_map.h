// Internal: the raw heat map of a frame cut into tiles (tiled_map.cpp).
#pragma once

#include <functional>

#include <torch/types.h>

#include "pefm/detector.h"
#include "pefm/frame_input.h"
#include "pefm/tiling.h"

namespace pefm {

// Tiles of `tiles.size` frame pixels, each resized to the model's input, their maps fitted
// back and blended where they overlap: [map_h, map_w] raw scores on the CPU, map_w =
// round(width * S / tile). `between_batches` runs before each batch of tiles (it may throw
// to abandon the frame).
torch::Tensor tiled_map(Detector& detector, const FrameInput& input, const TileOptions& tiles,
                        const std::function<void()>& between_batches);

}  // namespace pefm
