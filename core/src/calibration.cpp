#include "pefm/calibration.h"

#include <algorithm>
#include <cmath>
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

double Calibration::normalize(double raw) const {
  if (!valid) return raw;
  const double span = threshold - base;
  return std::clamp(0.5 + 0.5 * (raw - threshold) / span, 0.0, 1.0);
}

torch::Tensor Calibration::normalize(const torch::Tensor& raw) const {
  if (!valid) return raw;
  const double span = threshold - base;
  return ((raw - threshold) * (0.5 / span) + 0.5).clamp(0.0, 1.0);
}

double Calibration::denormalize(double normalised) const {
  if (!valid) return normalised;
  return threshold + (normalised - 0.5) * 2.0 * (threshold - base);
}

Calibration Calibration::from_normal(const torch::Tensor& maps, const torch::Tensor& scores) {
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

}  // namespace pefm
