#include "pefm/postprocess.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "pefm/regions.h"

namespace pefm {

std::pair<torch::Tensor, int64_t> label_regions(const torch::Tensor& mask) {
  TORCH_CHECK(mask.dim() == 2, "label_regions needs a [H, W] mask, got ", mask.sizes());
  const auto m = mask.detach().cpu().ne(0).to(torch::kFloat32).contiguous();
  const int64_t h = m.size(0), w = m.size(1);
  std::vector<int32_t> comp;
  const int32_t count = label_components(m.data_ptr<float>(), h, w, 0.5f, &comp);
  auto labels = torch::empty({h, w}, torch::kInt32);
  auto* lv = labels.data_ptr<int32_t>();
  for (size_t i = 0; i < comp.size(); ++i) lv[i] = comp[i] + 1;  // 0: background
  return {labels, count};
}

std::vector<FrameRegion> map_regions(const torch::Tensor& map, double threshold, int width, int height) {
  TORCH_CHECK(map.dim() == 2 && map.is_contiguous() && map.scalar_type() == torch::kFloat32 && map.is_cpu(),
              "map_regions needs a contiguous float32 [H, W] map on the CPU, got ", map.sizes());
  std::vector<FrameRegion> out;
  const int64_t mh = map.size(0), mw = map.size(1);
  const auto* mv = map.data_ptr<float>();
  std::vector<int32_t> comp;
  const int32_t count = label_components(mv, mh, mw, static_cast<float>(threshold), &comp);
  if (count == 0) return out;
  const double sx = static_cast<double>(width) / mw, sy = static_cast<double>(height) / mh;  // for the area
  struct Box {
    int64_t x0, y0, x1, y1, n;
    float peak;
  };
  std::vector<Box> boxes(static_cast<size_t>(count), Box{INT64_MAX, INT64_MAX, -1, -1, 0, 0.0f});
  for (int64_t y = 0; y < mh; ++y) {
    for (int64_t x = 0; x < mw; ++x) {
      const int32_t l = comp[static_cast<size_t>(y * mw + x)];
      if (l < 0) continue;
      auto& b = boxes[static_cast<size_t>(l)];
      b.x0 = std::min(b.x0, x);
      b.y0 = std::min(b.y0, y);
      b.x1 = std::max(b.x1, x);
      b.y1 = std::max(b.y1, y);
      ++b.n;
      b.peak = std::max(b.peak, mv[y * mw + x]);
    }
  }
  for (const auto& b : boxes) {
    const FrameSpan xs = frame_span(b.x0, b.x1 + 1 - b.x0, width, mw, width);
    const FrameSpan ys = frame_span(b.y0, b.y1 + 1 - b.y0, height, mh, height);
    FrameRegion g;
    g.x = static_cast<int>(xs.begin);
    g.y = static_cast<int>(ys.begin);
    g.width = static_cast<int>(xs.end - xs.begin);
    g.height = static_cast<int>(ys.end - ys.begin);
    g.area = std::llround(b.n * sx * sy);
    g.peak = b.peak;
    out.push_back(g);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.peak > b.peak; });
  return out;
}

namespace {

// A raw map as the post-processing reads it: float32, contiguous, on the CPU, finite by
// the detector's own policy (finite_scores).
torch::Tensor finite_raw(const torch::Tensor& raw_map) {
  return finite_scores(raw_map.to(torch::kCPU)).contiguous();
}

// A finite raw map normalised (NaN from the calibration's arithmetic: 0).
torch::Tensor normalized_finite(const torch::Tensor& raw, const Calibration& calibration) {
  return torch::nan_to_num(normalize_map(calibration, raw), 0.0, 1.0, 0.0).to(torch::kFloat32).contiguous();
}

}  // namespace

FrameResult score_map(const torch::Tensor& raw_map, const Calibration& calibration, const Thresholds& thresholds,
                      int width, int height) {
  const auto raw = finite_raw(raw_map);
  const auto norm = normalized_finite(raw, calibration);
  FrameResult r;
  r.raw_score = raw.max().item<float>();
  r.score = calibration.score(r.raw_score);
  r.anomalous = calibration.anomalous(r.raw_score, thresholds.image);
  r.map_height = static_cast<int>(norm.size(0));
  r.map_width = static_cast<int>(norm.size(1));
  r.map.assign(norm.data_ptr<float>(), norm.data_ptr<float>() + norm.numel());
  r.map_scale_x = static_cast<double>(width) / r.map_width;
  r.map_scale_y = static_cast<double>(height) / r.map_height;
  r.region_level = region_level(calibration, thresholds);
  return r;
}

torch::Tensor normalized_map(const torch::Tensor& raw_map, const Calibration& calibration) {
  return normalized_finite(finite_raw(raw_map), calibration);
}

float region_level(const Calibration& calibration, const Thresholds& thresholds) {
  return static_cast<float>(calibration.normalize(calibration.region_cut(thresholds.region)));
}

FrameResult postprocess(const torch::Tensor& raw_map, const Calibration& calibration, const Thresholds& thresholds,
                        int width, int height) {
  FrameResult r = score_map(raw_map, calibration, thresholds, width, height);
  // Regions from the very map the contours are drawn from, at the very float they are drawn
  // at: one comparison, so no pixel is in a region and outside its contour from rounding.
  const auto norm = torch::from_blob(r.map.data(), {r.map_height, r.map_width}, torch::kFloat32);
  r.regions = map_regions(norm, r.region_level, width, height);
  return r;
}

}  // namespace pefm
