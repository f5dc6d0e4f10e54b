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

torch::Tensor tiled_map(Detector& detector, const FrameInput& input, const TileOptions& tiles,
                        const std::function<void()>& between_batches) {
  const auto& pixels = input.pixels;
  const int64_t S = detector.image_size();
  const int H = static_cast<int>(pixels.size(0)), W = static_cast<int>(pixels.size(1));
  const int tile = tiles.size;
  const auto xs = tile_origins(W, tile, tiles.overlap), ys = tile_origins(H, tile, tiles.overlap);
  const int tw = std::min(tile, W), th = std::min(tile, H);
  const double s = static_cast<double>(S) / tile;  // map pixels per frame pixel
  const int64_t mw = std::max<int64_t>(1, std::llround(W * s)), mh = std::max<int64_t>(1, std::llround(H * s));
  const int64_t fw = std::min<int64_t>(mw, std::max<int64_t>(1, std::llround(tw * s)));
  const int64_t fh = std::min<int64_t>(mh, std::max<int64_t>(1, std::llround(th * s)));
  // Each tile's weight ramps over the whole overlap, so neighbours cross-fade linearly
  // (weights sum to one there) and a tile's edge columns, where zero padding distorts
  // the features, contribute almost nothing.
  const double ramp = tiles.overlap > 0 ? std::max(1.0, tiles.overlap * s) : 0.0;
  const auto weight = edge_ramp(fh, ramp).unsqueeze(1) * edge_ramp(fw, ramp).unsqueeze(0);
  auto acc = torch::zeros({mh, mw}), wsum = torch::zeros({mh, mw});
  std::vector<std::pair<int, int>> origins;
  for (int y0 : ys) {
    for (int x0 : xs) origins.emplace_back(y0, x0);
  }
  // Batches of about 16 inputs of 256 px: the cancellation check between batches comes
  // about as often whatever the model's input size.
  const size_t batch = static_cast<size_t>(std::clamp<int64_t>(16 * 256 * 256 / (S * S), 1, 16));
  for (size_t i = 0; i < origins.size(); i += batch) {
    between_batches();
    std::vector<torch::Tensor> crops;
    const size_t end = std::min(origins.size(), i + batch);
    for (size_t j = i; j < end; ++j) {
      crops.push_back(pixels.slice(0, origins[j].first, origins[j].first + th)
                          .slice(1, origins[j].second, origins[j].second + tw)
                          .unsqueeze(0));
    }
    const auto maps = detector.detect(crops, input.channels).maps.to(torch::kCPU);
    const auto fitted = torch::nn::functional::interpolate(
                            maps.unsqueeze(1), torch::nn::functional::InterpolateFuncOptions()
                                                   .size(std::vector<int64_t>{fh, fw})
                                                   .mode(torch::kBilinear)
                                                   .align_corners(false))
                            .squeeze(1);
    for (size_t j = i; j < end; ++j) {
      const int64_t oy = std::min<int64_t>(mh - fh, std::llround(origins[j].first * s));
      const int64_t ox = std::min<int64_t>(mw - fw, std::llround(origins[j].second * s));
      acc.slice(0, oy, oy + fh).slice(1, ox, ox + fw) += fitted[static_cast<int64_t>(j - i)] * weight;
      wsum.slice(0, oy, oy + fh).slice(1, ox, ox + fw) += weight;
    }
  }
  return acc / wsum.clamp_min(1e-6);
}

}  // namespace pefm
