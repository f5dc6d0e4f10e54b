#include "pefm/calibration.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <stdexcept>

namespace pefm {

void Calibration::validate() const {
  if (!valid) return;
  const auto fail = [](const std::string& field, const std::string& why) {
    throw std::invalid_argument("calibration." + field + " " + why);
  };
  const auto check_number = [&](const char* field, double v) {
    if (!std::isfinite(v)) fail(field, "is not a finite number");
  };
  for (const auto& [field, v] : {std::pair<const char*, double>{"threshold", threshold}, {"image_mean", image_mean},
                                 {"image_std", image_std}, {"image_min", image_min}, {"image_max", image_max},
                                 {"pixel_mean", pixel_mean}, {"pixel_std", pixel_std}}) {
    check_number(field, v);
    // Scores are sums of squared residuals: never below 0.
    if (v < 0) fail(field, std::to_string(v) + " is negative; scores and their spreads are not");
  }
  check_number("base", base);
  // The writers keep base at least 1e-6 + 1e-3 threshold below a tiny threshold, which
  // can put it a little below 0; no further.
  if (base < 0 && base < threshold - 1.000001 * (1e-6 + 1e-3 * threshold))
    fail("base", std::to_string(base) + " is negative; normal scores are not");
  // Normalising divides by threshold - base: a difference at rounding level would turn
  // noise into decisions.
  if (!(threshold - base > 1e-9 * std::max(1.0, threshold)))
    fail("threshold", std::to_string(threshold) + " is not above calibration.base " + std::to_string(base) +
                          " by more than rounding");
  if (image_min > image_max) fail("image_min", "is above calibration.image_max");
  if (!(val_false_positive_rate >= 0 && val_false_positive_rate <= 1)) fail("val_false_positive_rate", "is not in 0..1");
  for (const auto* q : {&image_quantiles, &pixel_quantiles}) {
    const char* field = q == &image_quantiles ? "image_quantiles" : "pixel_quantiles";
    for (size_t i = 0; i < q->size(); ++i) {
      check_number(field, (*q)[i]);
      if (i > 0 && (*q)[i] < (*q)[i - 1]) fail(field, "are not in ascending order (entry " + std::to_string(i) + ")");
    }
  }
  if (method == "conformal") {
    if (groups < 1 || groups > images) fail("groups", std::to_string(groups) + " is not in 1..calibration.images");
    if (folds < 2 || folds > groups)
      fail("folds", std::to_string(folds) + " is not in 2.." + std::to_string(groups) + " (one group at least a fold)");
    // 1 - k / (n + 1) with k <= n (grouped: (W + 1) / (m + 1)): never below 1 / (m + 1).
    const double least = 1.0 / static_cast<double>(groups + 1);
    if (!(false_alarm_bound >= least * (1 - 1e-9) && false_alarm_bound <= 1))
      fail("false_alarm_bound", std::to_string(false_alarm_bound) + " is below 1/(" + std::to_string(groups) +
                                    " + 1), the least rate " + std::to_string(groups) + " units can state");
    if (!(false_alarm_target > 0 && false_alarm_target <= 0.5)) fail("false_alarm_target", "is not in (0, 0.5]");
    if (false_alarm_bound > std::max(false_alarm_target, least) * (1 + 1e-9))
      fail("false_alarm_bound", "is above both the rate asked and the least the calibration units allow");
    if (!(false_alarm_upper95 >= false_alarm_bound * (1 - 1e-9) && false_alarm_upper95 <= 1))
      fail("false_alarm_upper95", "is below calibration.false_alarm_bound or above 1");
  }
  if (std::isfinite(region_threshold)) {
    if (!(region_threshold > base)) fail("region_threshold", "is not above calibration.base");
    for (const auto& [field, v] : {std::pair<const char*, double>{"region_rate", region_rate},
                                   {"region_image_rate", region_image_rate}})
      if (!(v >= 0 && v <= 1)) fail(field, "is not in 0..1");
    if (!(region_rate_target > 0 && region_rate_target <= 0.5)) fail("region_rate_target", "is not in (0, 0.5]");
    if (region_pixels < 1) fail("region_pixels", "is not positive");
  }
}

double Calibration::normalize_unclamped(double raw) const {
  if (!valid) return raw;
  return 0.5 + 0.5 * (raw - threshold) / (threshold - base);
}

double Calibration::normalize(double raw) const {
  return valid ? std::clamp(normalize_unclamped(raw), 0.0, 1.0) : raw;
}

double Calibration::denormalize(double normalised) const {
  if (!valid) return normalised;
  return threshold + (normalised - 0.5) * 2.0 * (threshold - base);
}

double Calibration::region_raw(double region_normalised) const {
  if (!valid) return region_normalised;
  const double level = std::isfinite(region_threshold) ? region_threshold : threshold;
  return base + 2.0 * region_normalised * (level - base);
}

double Calibration::region_cut(double region_normalised) const {
  if (!valid) return region_normalised;
  const double lo = base + 1e-6 * (threshold - base), hi = 2.0 * threshold - base;
  return std::clamp(region_raw(region_normalised), lo, hi);
}

namespace {

// conformal_threshold with groups (see calibration.h).
ConformalThreshold grouped_threshold(const std::vector<double>& scores, double target, const std::vector<int64_t>& group) {
  std::map<int64_t, int64_t> size;
  for (int64_t g : group) ++size[g];
  const auto m = static_cast<int64_t>(size.size());
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  const auto level = [&](double w) { return (w + 1.0) / static_cast<double>(m + 1); };
  // Walking down from the largest score: W(t) of each distinct score t is the weight of
  // the scores above it. The threshold is the lowest t whose level is still <= target.
  ConformalThreshold t;
  t.units = m;
  t.enough = level(0.0) <= target + 1e-12;
  double w = 0.0;
  size_t i = order.size();
  t.threshold = scores[order.back()];
  t.rank = static_cast<int64_t>(order.size());
  while (i > 0) {
    // scores[order[j]] for j in [lo, i) are equal: the candidate t, with weight w above it.
    size_t lo = i - 1;
    while (lo > 0 && scores[order[lo - 1]] == scores[order[i - 1]]) --lo;
    if (t.enough && level(w) > target + 1e-12) break;
    t.threshold = scores[order[i - 1]];
    t.rank = static_cast<int64_t>(i);
    t.above = w;
    if (!t.enough) break;  // the largest score, the best the groups support
    for (size_t j = lo; j < i; ++j) w += 1.0 / static_cast<double>(size[group[order[j]]]);
    i = lo;
  }
  t.bound = level(t.above);
  return t;
}

}  // namespace

ConformalThreshold conformal_threshold(std::vector<double> scores, double target, const std::vector<int64_t>& group) {
  if (scores.empty()) throw std::invalid_argument("a false-alarm threshold needs at least one normal image's score");
  if (!(target > 0.0 && target < 1.0)) throw std::invalid_argument("the false-alarm rate must lie in (0, 1)");
  for (double v : scores) {
    if (!std::isfinite(v)) throw std::invalid_argument("a false-alarm threshold got a non-finite score");
  }
  if (!group.empty()) {
    if (group.size() != scores.size())
      throw std::invalid_argument("a false-alarm threshold got " + std::to_string(group.size()) + " group labels for " +
                                  std::to_string(scores.size()) + " scores");
    return grouped_threshold(scores, target, group);
  }
  std::sort(scores.begin(), scores.end());
  const auto n = static_cast<int64_t>(scores.size());
  ConformalThreshold t;
  // The smallest k with 1 - k / (n + 1) <= target, i.e. k >= (n + 1)(1 - target). The
  // product can land a rounding error above an integer (99 scores, 5 %: 95.000...01), so
  // it is rounded up after a tiny allowance, then stepped until the bound (compared with
  // the same allowance for its own rounding) is at most the target.
  const double need = static_cast<double>(n + 1) * (1.0 - target);
  t.rank = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(need - 1e-9)));
  const auto bound_at = [&](int64_t k) { return 1.0 - static_cast<double>(k) / static_cast<double>(n + 1); };
  while (t.rank <= n && bound_at(t.rank) > target + 1e-12) ++t.rank;
  if (t.rank > n) {
    t.enough = false;
    t.rank = n;
  }
  t.threshold = scores[static_cast<size_t>(t.rank - 1)];
  t.bound = 1.0 - static_cast<double>(t.rank) / static_cast<double>(n + 1);
  t.units = n;
  t.above = static_cast<double>(n - t.rank);
  return t;
}

double clopper_pearson_upper(int64_t k, int64_t n, double confidence) {
  if (n <= 0) return 1.0;
  if (k >= n) return 1.0;
  // P(X <= k | n, p), summed in log space; decreasing in p.
  const auto cdf = [&](double p) {
    double sum = 0.0;
    const double lp = std::log(p), lq = std::log1p(-p);
    for (int64_t i = 0; i <= k; ++i) {
      const double log_term = std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) + i * lp +
                              (n - i) * lq;
      sum += std::exp(log_term);
    }
    return sum;
  };
  double lo = 0.0, hi = 1.0;
  for (int iter = 0; iter < 100; ++iter) {
    const double mid = 0.5 * (lo + hi);
    (cdf(mid) > 1.0 - confidence ? lo : hi) = mid;
  }
  return hi;
}

void Calibration::set_false_alarm_threshold(const std::vector<double>& scores, double target, int64_t fold_count,
                                            const std::vector<int64_t>& group) {
  const auto t = conformal_threshold(scores, target, group);
  method = "conformal";
  threshold = t.threshold;
  // base (the normalised 0) stays below the threshold: a high rate can put the threshold
  // under the median normal pixel.
  const double floor_gap = 1e-6 + 1e-3 * std::abs(threshold);
  if (threshold - base < floor_gap) base = threshold - floor_gap;
  false_alarm_target = target;
  false_alarm_bound = t.bound;
  folds = fold_count;
  images = static_cast<int64_t>(scores.size());  // the images the threshold was set on
  groups = t.units;
  false_alarm_upper95 = clopper_pearson_upper(static_cast<int64_t>(std::ceil(t.above - 1e-9)), t.units);
  const auto n = static_cast<int64_t>(scores.size());
  int64_t above = 0;
  for (double v : scores) above += v > threshold;
  val_false_positive_rate = static_cast<double>(above) / static_cast<double>(n);
}

}  // namespace pefm
