// Tiling a frame larger than the model's input (line-scan webs, high-resolution cameras):
// where the tiles lie and what a tiling may cost. No LibTorch: the element checks its
// properties with it. The tiled heat map itself is computed in core/src/tiled_map.cpp.
#pragma once

#include <cstdint>
#include <vector>

namespace pefm {

// TileOptions::size that stands for the model's training tile (FrameDetector::resolve).
constexpr int kTileAsTrained = -1;

struct TileOptions {
  int size = 0;     // tile edge in native frame pixels; 0 = whole frame resized; kTileAsTrained
  int overlap = 0;  // pixels shared by neighbouring tiles (blended)
};

// Bounds on tiling, so that no setting makes one frame's work explode: tiles of at least
// kMinTileSize pixels, an overlap of at most half a tile, and at most kMaxTilesPerFrame
// tiles a frame, fewer for models larger than kTileBudgetSize px (64 at 1024 px), so that
// the network-input pixels of one frame stay bounded.
constexpr int kMinTileSize = 32;
constexpr int64_t kMaxTilesPerFrame = 1024;
constexpr int64_t kTileBudgetSize = 256;

// Throws std::invalid_argument naming tile-size or tile-overlap when `tiles` cannot be
// used on a width x height frame by a model of `input_size` px.
void check_tiles(const TileOptions& tiles, int width, int height, int64_t input_size);

// Tile origins along one axis: tiles of `tile` px with `overlap`, the last one flush with
// the end; a frame shorter than a tile gets one tile of the frame's length.
std::vector<int> tile_origins(int length, int tile, int overlap);

// The distance between neighbouring tile origins (tile - overlap, the overlap clamped to
// 0..tile-1): tile_origins' grid, and the grid continuous mode lays on a web.
int tile_step(int tile, int overlap);

}  // namespace pefm
