#include "pefm/tiling.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace pefm {

int tile_step(int tile, int overlap) { return std::max(1, tile - std::max(0, std::min(overlap, tile - 1))); }

std::vector<int> tile_origins(int length, int tile, int overlap) {
  if (tile <= 0 || length <= tile) return {0};
  const int step = tile_step(tile, overlap);
  std::vector<int> out;
  for (int o = 0;; o += step) {
    if (o + tile >= length) {
      out.push_back(length - tile);  // flush with the end
      break;
    }
    out.push_back(o);
  }
  return out;
}

void check_tiles(const TileOptions& tiles, int width, int height, int64_t input_size) {
  if (tiles.size <= 0) return;  // whole frames
  if (tiles.size < kMinTileSize) {
    throw std::invalid_argument("tile-size " + std::to_string(tiles.size) + " is below the minimum of " +
                                std::to_string(kMinTileSize) + " pixels (0: whole frames)");
  }
  if (tiles.overlap < 0 || tiles.overlap > tiles.size / 2) {
    throw std::invalid_argument("tile-overlap " + std::to_string(tiles.overlap) + " must be between 0 and half the tile-size " +
                                std::to_string(tiles.size));
  }
  const auto count = tile_origins(width, tiles.size, tiles.overlap).size() *
                     tile_origins(height, tiles.size, tiles.overlap).size();
  // Each tile is one network input of input_size^2 pixels: the bound is on their sum.
  const auto allowed = static_cast<size_t>(std::clamp<int64_t>(
      kMaxTilesPerFrame * kTileBudgetSize * kTileBudgetSize / std::max<int64_t>(1, input_size * input_size), 1,
      kMaxTilesPerFrame));
  if (count > allowed) {
    throw std::invalid_argument("tile-size " + std::to_string(tiles.size) + " with tile-overlap " +
                                std::to_string(tiles.overlap) + " cuts a " + std::to_string(width) + "x" +
                                std::to_string(height) + " frame into " + std::to_string(count) + " tiles; at most " +
                                std::to_string(allowed) + " of this model's " + std::to_string(input_size) +
                                " px inputs are allowed per frame (use larger tiles)");
  }
}

}  // namespace pefm
