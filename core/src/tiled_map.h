// Internal: the raw heat map of a frame cut into tiles (tiled_map.cpp), and the pieces the
// continuous web (web_stream.cpp) shares with it, so that both blend tiles identically.
#pragma once

#include <functional>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "pefm/detector.h"
#include "pefm/frame_input.h"
#include "pefm/tiling.h"

namespace pefm {

// Where the tiles of a frame `width` pixels wide lie across it and how their maps are
// fitted back: each tile of tile_w x tile_h frame pixels becomes fit_w x fit_h map pixels,
// weighted by `weight` (falling off over the overlap) and placed at map position
// round(frame position * scale), no further than the map's end.
struct TileLayout {
  TileLayout(const Detector& detector, const TileOptions& tiles, int width, int tile_h, int64_t map_h);

  int tile_w, tile_h;
  double scale;          // map pixels per frame pixel (model input / tile size)
  int64_t map_w, map_h;  // the map's size (map_h: of the frame the tiles are placed in)
  int64_t fit_w, fit_h;
  std::vector<int> xs;   // tile origins across the frame
  torch::Tensor weight;  // [fit_h, fit_w], on the detector's device
  size_t batch;          // tiles per detector call

  // Map row of a tile whose top is at frame row `y` (clamped to the map's end).
  int64_t map_row(int64_t y) const;
};

// Scores the tiles with tops at frame rows `rows` (each across the whole width, `layout.xs`)
// and blends their maps into acc and wsum ([rows, map_w] on the detector's device, so a GPU
// is not waited for between batches; map row r lands at r - acc_row0). `pixels` [H, W, C] holds frame rows from `pixel_row0` on.
// `between_batches` runs before each detector call (it may throw to abandon the work).
void blend_tiles(Detector& detector, const TileLayout& layout, const torch::Tensor& pixels, int64_t pixel_row0,
                 const ChannelMap& channels, const std::vector<int64_t>& rows, torch::Tensor& acc, torch::Tensor& wsum,
                 int64_t acc_row0, const std::function<void()>& between_batches);

// Tiles of `tiles.size` frame pixels, each resized to the model's input, their maps fitted
// back and blended where they overlap: [map_h, map_w] raw scores on the detector's device, map_w =
// round(width * S / tile). `between_batches` runs before each batch of tiles (it may throw
// to abandon the frame).
torch::Tensor tiled_map(Detector& detector, const FrameInput& input, const TileOptions& tiles,
                        const std::function<void()>& between_batches);

}  // namespace pefm
