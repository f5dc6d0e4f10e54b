#include "pefm/calibration_maps.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <torch/torch.h>

namespace pefm {

namespace {

std::vector<double> percentiles(const torch::Tensor& values) {
  // Linear interpolation between order statistics, like numpy.percentile.
  auto sorted = std::get<0>(values.flatten().to(torch::kFloat64).sort());
  const auto n = sorted.numel();
  const auto* v = sorted.data_ptr<double>();
  std::vector<double> q(101);
  for (int p = 0; p <= 100; ++p) {
    const double pos = (n - 1) * p / 100.0;
    const auto lo = static_cast<int64_t>(std::floor(pos));
    const auto hi = std::min<int64_t>(lo + 1, n - 1);
    q[p] = v[lo] + (v[hi] - v[lo]) * (pos - lo);
  }
  return q;
}

}  // namespace

torch::Tensor normalize_map(const Calibration& c, const torch::Tensor& raw) {
  if (!c.valid) return raw;
  const double span = c.threshold - c.base;
  return ((raw - c.threshold) * (0.5 / span) + 0.5).clamp(0.0, 1.0);
}

Calibration calibration_from_normal(const torch::Tensor& maps, const torch::Tensor& scores) {
  if (maps.numel() == 0 || scores.numel() == 0) {
    throw std::invalid_argument("calibration needs at least one held-out normal image");
  }
  const auto m = maps.detach().cpu().to(torch::kFloat64);
  const auto s = scores.detach().cpu().to(torch::kFloat64);
  if (!torch::isfinite(m).all().item<bool>() || !torch::isfinite(s).all().item<bool>()) {
    throw std::invalid_argument("calibration got non-finite anomaly scores (NaN or Inf)");
  }
  Calibration c;
  c.images = s.numel();
  c.image_mean = s.mean().item<double>();
  c.image_std = s.numel() > 1 ? s.std().item<double>() : 0.0;
  c.image_min = s.min().item<double>();
  c.image_max = s.max().item<double>();
  c.pixel_mean = m.mean().item<double>();
  c.pixel_std = m.numel() > 1 ? m.std().item<double>() : 0.0;
  c.image_quantiles = percentiles(s);
  // Pixel quantiles from a bounded, evenly strided sample: exact enough, constant memory.
  const auto flat = m.flatten();
  const int64_t step = std::max<int64_t>(1, flat.numel() / 1000000);
  c.pixel_quantiles = percentiles(flat.slice(0, 0, flat.numel(), step));
  c.base = c.pixel_quantiles[50];
  c.threshold = c.image_mean + 3.0 * c.image_std;
  // A degenerate spread (one image, identical scores) must still leave base < threshold.
  const double floor_gap = 1e-6 + 1e-3 * std::abs(c.threshold);
  if (c.threshold - c.base < floor_gap) c.threshold = c.base + floor_gap;
  c.val_false_positive_rate = (s > c.threshold).to(torch::kFloat64).mean().item<double>();
  c.valid = true;
  return c;
}

void set_region_threshold(Calibration& c, const torch::Tensor& maps, const std::vector<double>& image_scores,
                          double target) {
  if (!(target > 0.0 && target <= 0.5)) throw std::invalid_argument("the pixel false-alarm rate must lie in (0, 0.5]");
  if (maps.numel() == 0 || image_scores.empty())
    throw std::invalid_argument("a region threshold needs at least one normal image's map");
  const auto flat = maps.detach().cpu().flatten();
  // At most 4 million pixels, evenly spaced over the whole set (a fractional stride: an
  // integer one would keep the same few columns of every map).
  constexpr int64_t kMaxPixels = 4000000;
  const auto sample = (flat.numel() <= kMaxPixels
                           ? flat
                           : flat.index_select(0, torch::linspace(0, static_cast<double>(flat.numel() - 1), kMaxPixels,
                                                                  torch::kFloat64).floor().to(torch::kLong)))
                          .to(torch::kFloat64)
                          .contiguous();
  if (!torch::isfinite(sample).all().item<bool>())
    throw std::invalid_argument("a region threshold got non-finite pixel scores (NaN or Inf)");
  const auto* v = sample.data_ptr<double>();
  const auto t = conformal_threshold(std::vector<double>(v, v + sample.numel()), target);
  const double floor_gap = 1e-6 + 1e-3 * std::abs(t.threshold);
  c.region_threshold = std::max(t.threshold, c.base + floor_gap);
  c.region_rate_target = target;
  c.region_pixels = sample.numel();
  c.region_rate = sample.ge(c.region_threshold).to(torch::kFloat64).mean().item<double>();
  int64_t with_region = 0;
  for (double s : image_scores) {
    if (!std::isfinite(s)) throw std::invalid_argument("a region threshold got a non-finite image score");
    with_region += s >= c.region_threshold;
  }
  c.region_image_rate = static_cast<double>(with_region) / static_cast<double>(image_scores.size());
}

torch::Tensor finite_scores(const torch::Tensor& raw) {
  const float top = std::numeric_limits<float>::max();
  return torch::nan_to_num(raw.to(torch::kFloat32), top, top, 0.0);
}

}  // namespace pefm
