#include "tiled_map.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <torch/torch.h>

namespace pefm {

namespace {

// Weights that fall off towards a tile's edges over `ramp` map pixels, so overlapping
// tiles blend smoothly instead of meeting at a seam.
torch::Tensor edge_ramp(int64_t n, double ramp) {
  auto i = torch::arange(n, torch::kFloat32);
  if (ramp <= 0) return torch::ones({n});
  auto d = torch::minimum(i + 0.5, n - i - 0.5);
  return (d / ramp).clamp(1e-3, 1.0);
}

}  // namespace

TileLayout::TileLayout(const Detector& detector, const TileOptions& tiles, int width, int tile_height, int64_t map_height)
    : tile_w(std::min(tiles.size, width)),
      tile_h(tile_height),
      scale(static_cast<double>(detector.image_size()) / tiles.size),
      map_w(std::max<int64_t>(1, std::llround(width * scale))),
      map_h(map_height),
      xs(tile_origins(width, tiles.size, tiles.overlap)) {
  fit_w = std::min<int64_t>(map_w, std::max<int64_t>(1, std::llround(tile_w * scale)));
  fit_h = std::min<int64_t>(map_h, std::max<int64_t>(1, std::llround(tile_h * scale)));
  // Each tile's weight ramps over the whole overlap, so neighbours cross-fade linearly
  // (weights sum to one there) and a tile's edge columns, where zero padding distorts
  // the features, contribute almost nothing.
  const double ramp = tiles.overlap > 0 ? std::max(1.0, tiles.overlap * scale) : 0.0;
  weight = (edge_ramp(fit_h, ramp).unsqueeze(1) * edge_ramp(fit_w, ramp).unsqueeze(0)).to(detector.device());
  // Batches of about 16 inputs of 256 px: the cancellation check between batches comes
  // about as often whatever the model's input size.
  const int64_t S = detector.image_size();
  batch = static_cast<size_t>(std::clamp<int64_t>(16 * 256 * 256 / (S * S), 1, 16));
}

int64_t TileLayout::map_row(int64_t y) const {
  return std::min<int64_t>(map_h - fit_h, std::llround(static_cast<double>(y) * scale));
}

void blend_tiles(Detector& detector, const TileLayout& layout, const torch::Tensor& pixels, int64_t pixel_row0,
                 const ChannelMap& channels, const std::vector<int64_t>& rows, torch::Tensor& acc, torch::Tensor& wsum,
                 int64_t acc_row0, const std::function<void()>& between_batches) {
  std::vector<std::pair<int64_t, int>> origins;
  for (int64_t y0 : rows) {
    for (int x0 : layout.xs) origins.emplace_back(y0, x0);
  }
  for (size_t i = 0; i < origins.size(); i += layout.batch) {
    between_batches();
    std::vector<torch::Tensor> crops;
    const size_t end = std::min(origins.size(), i + layout.batch);
    for (size_t j = i; j < end; ++j) {
      const int64_t y = origins[j].first - pixel_row0;
      crops.push_back(pixels.slice(0, y, y + layout.tile_h)
                          .slice(1, origins[j].second, origins[j].second + layout.tile_w)
                          .unsqueeze(0));
    }
    const auto maps = detector.detect(crops, channels).maps;  // blended where they are: no wait for a GPU
    const auto fitted = torch::nn::functional::interpolate(
                            maps.unsqueeze(1), torch::nn::functional::InterpolateFuncOptions()
                                                   .size(std::vector<int64_t>{layout.fit_h, layout.fit_w})
                                                   .mode(torch::kBilinear)
                                                   .align_corners(false))
                            .squeeze(1);
    for (size_t j = i; j < end; ++j) {
      const int64_t oy = layout.map_row(origins[j].first) - acc_row0;
      const int64_t ox = std::min<int64_t>(layout.map_w - layout.fit_w, std::llround(origins[j].second * layout.scale));
      acc.slice(0, oy, oy + layout.fit_h).slice(1, ox, ox + layout.fit_w) +=
          fitted[static_cast<int64_t>(j - i)] * layout.weight;
      wsum.slice(0, oy, oy + layout.fit_h).slice(1, ox, ox + layout.fit_w) += layout.weight;
    }
  }
}

torch::Tensor tiled_map(Detector& detector, const FrameInput& input, const TileOptions& tiles,
                        const std::function<void()>& between_batches) {
  const int H = static_cast<int>(input.pixels.size(0)), W = static_cast<int>(input.pixels.size(1));
  const double s = static_cast<double>(detector.image_size()) / tiles.size;
  const int64_t mh = std::max<int64_t>(1, std::llround(H * s));
  const TileLayout layout(detector, tiles, W, std::min(tiles.size, H), mh);
  const auto on = torch::TensorOptions().device(detector.device());
  auto acc = torch::zeros({mh, layout.map_w}, on), wsum = torch::zeros({mh, layout.map_w}, on);
  const auto ys = tile_origins(H, tiles.size, tiles.overlap);
  blend_tiles(detector, layout, input.pixels, 0, input.channels, std::vector<int64_t>(ys.begin(), ys.end()), acc, wsum, 0,
              between_batches);
  return acc / wsum.clamp_min(1e-6);
}

}  // namespace pefm
