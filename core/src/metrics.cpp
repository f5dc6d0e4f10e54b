#include "pefm/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <torch/torch.h>

#include "pefm/postprocess.h"

namespace pefm {

double auroc(const torch::Tensor& scores, const torch::Tensor& labels) {
  TORCH_CHECK(scores.numel() == labels.numel(), "auroc: ", scores.numel(), " scores but ",
              labels.numel(), " labels");
  const auto s = scores.detach().flatten().cpu().to(torch::kFloat64);
  const auto l = labels.detach().flatten().cpu().ne(0);
  const auto order = std::get<1>(s.sort());
  const auto ss = s.index_select(0, order).contiguous();
  const auto ls = l.index_select(0, order).contiguous();
  const auto* sv = ss.data_ptr<double>();
  const auto* lv = ls.data_ptr<bool>();
  const int64_t n = ss.numel();
  double pos = 0, rank_sum = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    double pos_in_group = 0;
    while (j < n && sv[j] == sv[i]) pos_in_group += lv[j++];
    // Ranks i+1 .. j share their average.
    rank_sum += pos_in_group * (static_cast<double>(i + 1 + j) / 2.0);
    pos += pos_in_group;
    i = j;
  }
  const double neg = static_cast<double>(n) - pos;
  if (pos == 0 || neg == 0) return std::numeric_limits<double>::quiet_NaN();
  return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}

namespace {

struct Box {
  int64_t y0, y1, x0, x1, area;  // inclusive bounds
};

// Scores of the pixels that count for region `r` of `labels` ([H, W] int32, contiguous),
// inside its bounding box `b`: the region's own pixels, or its filled image (background
// not 8-connected to the box's border filled: skimage's image_filled calls scipy's
// binary_fill_holes with a 3x3 structure).
std::vector<double> region_pixels(const double* map, const int32_t* labels, int64_t w, int32_t r, const Box& b,
                                  ProRegions mode) {
  const int64_t y0 = b.y0, x0 = b.x0, y1 = b.y1, x1 = b.x1;
  std::vector<double> out;
  const int64_t bh = y1 - y0 + 1, bw = x1 - x0 + 1;
  std::vector<uint8_t> outside(static_cast<size_t>(bh * bw), 0);  // background reached from the border
  if (mode == ProRegions::kFilled) {
    std::vector<int64_t> stack;
    const auto push = [&](int64_t y, int64_t x) {
      const size_t i = static_cast<size_t>(y * bw + x);
      if (outside[i] || labels[(y0 + y) * w + x0 + x] == r) return;
      outside[i] = 1;
      stack.push_back(y * bw + x);
    };
    for (int64_t y = 0; y < bh; ++y) push(y, 0), push(y, bw - 1);
    for (int64_t x = 0; x < bw; ++x) push(0, x), push(bh - 1, x);
    while (!stack.empty()) {
      const int64_t i = stack.back();
      stack.pop_back();
      const int64_t y = i / bw, x = i % bw;
      for (int64_t dy = -1; dy <= 1; ++dy) {
        for (int64_t dx = -1; dx <= 1; ++dx) {
          if ((dy || dx) && y + dy >= 0 && y + dy < bh && x + dx >= 0 && x + dx < bw) push(y + dy, x + dx);
        }
      }
    }
  }
  for (int64_t y = 0; y < bh; ++y) {
    for (int64_t x = 0; x < bw; ++x) {
      const int64_t p = (y0 + y) * w + x0 + x;
      const bool counts = mode == ProRegions::kFilled ? !outside[static_cast<size_t>(y * bw + x)] : labels[p] == r;
      if (counts) out.push_back(map[p]);
    }
  }
  return out;
}

// Indices of `scores`, highest score first.
std::vector<size_t> descending(const std::vector<double>& scores) {
  std::vector<size_t> order(scores.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  return order;
}

}  // namespace

ProCurve pro_curve(const torch::Tensor& maps, const torch::Tensor& masks, int64_t steps, ProRegions mode) {
  TORCH_CHECK(maps.dim() == 3 && maps.sizes() == masks.sizes(), "aupro needs maps and masks of one [N, H, W] shape, got ",
              maps.sizes(), " and ", masks.sizes());
  TORCH_CHECK(steps > 1, "aupro needs at least two thresholds");
  const auto m = maps.detach().cpu().to(torch::kFloat64).contiguous();
  const auto gt = masks.detach().cpu().ne(0).contiguous();
  // Sorted scores of all negative pixels, and of the pixels each region counts, with the
  // region's area: every threshold's counts are then binary searches, so 1000 thresholds
  // cost no more than one pass.
  const auto negatives = std::get<0>(m.masked_select(gt.logical_not()).sort()).contiguous();
  std::vector<std::vector<double>> regions;
  std::vector<double> areas;
  const int64_t h = m.size(1), w = m.size(2);
  for (int64_t i = 0; i < m.size(0); ++i) {
    auto [labels, count] = label_regions(gt[i]);
    const auto lab = labels.to(torch::kInt32).contiguous();
    const auto mi = m[i].contiguous();
    const auto* lv = lab.data_ptr<int32_t>();
    std::vector<Box> boxes(static_cast<size_t>(count) + 1, Box{h, -1, w, -1, 0});
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        auto& b = boxes[static_cast<size_t>(lv[y * w + x])];
        b.y0 = std::min(b.y0, y), b.y1 = std::max(b.y1, y), b.x0 = std::min(b.x0, x), b.x1 = std::max(b.x1, x);
        ++b.area;
      }
    }
    for (int32_t r = 1; r <= count; ++r) {
      const auto& b = boxes[static_cast<size_t>(r)];
      auto px = region_pixels(mi.data_ptr<double>(), lv, w, r, b, mode);
      std::sort(px.begin(), px.end());
      regions.push_back(std::move(px));
      areas.push_back(static_cast<double>(b.area));
    }
  }
  ProCurve curve;
  if (regions.empty() || negatives.numel() == 0) return curve;
  const auto above = [](const double* v, int64_t n, double th) {
    return static_cast<double>(n - (std::upper_bound(v, v + n, th) - v));
  };
  const double hi = m.max().item<double>(), lo = m.min().item<double>();
  const double delta = (hi - lo) / static_cast<double>(steps);
  if (delta <= 0) return curve;
  // numpy.arange(hi, lo, -delta): ceil((lo - hi) / -delta) values hi - i * delta.
  const auto count = static_cast<int64_t>(std::ceil((lo - hi) / -delta));
  const auto* neg = negatives.data_ptr<double>();
  for (int64_t i = 0; i < count; ++i) {
    const double th = hi - static_cast<double>(i) * delta;
    double pro = 0;
    for (size_t r = 0; r < regions.size(); ++r)
      pro += above(regions[r].data(), static_cast<int64_t>(regions[r].size()), th) / areas[r];
    curve.thresholds.push_back(th);
    curve.fpr.push_back(above(neg, negatives.numel(), th) / static_cast<double>(negatives.numel()));
    curve.pro.push_back(pro / static_cast<double>(regions.size()));
  }
  return curve;
}

RegionDecisions regions_at(const torch::Tensor& maps, const torch::Tensor& masks, const std::vector<int>& labels,
                           double level) {
  if (maps.dim() != 3 || maps.sizes() != masks.sizes() || static_cast<int64_t>(labels.size()) != maps.size(0))
    throw std::invalid_argument("regions_at needs maps and masks of one [N, H, W] shape and N labels");
  const auto on = maps.detach().cpu().ge(level);
  const auto gt = masks.detach().cpu().ne(0);
  RegionDecisions d;
  d.level = level;
  const auto ratio = [](const torch::Tensor& num, const torch::Tensor& den) {
    const double n = static_cast<double>(den.sum().item<int64_t>());
    return n > 0 ? static_cast<double>(num.sum().item<int64_t>()) / n : std::numeric_limits<double>::quiet_NaN();
  };
  d.pixel_false_alarm_rate = ratio(on.logical_and(gt.logical_not()), gt.logical_not());
  d.pixel_recall = ratio(on.logical_and(gt), gt);
  double overlap = 0.0;
  int64_t touched = 0, with_regions = 0, good_on = 0;
  for (int64_t i = 0; i < maps.size(0); ++i) {
    if (labels[static_cast<size_t>(i)] == 0) {
      ++d.good_images;
      const auto n_on = on[i].sum().item<int64_t>();
      with_regions += n_on > 0;
      good_on += n_on;
    }
    const auto [lab, count] = label_regions(gt[i]);
    if (count == 0) continue;
    // Per region: its area and its outlined pixels, in one pass.
    const auto idx = lab.flatten().to(torch::kLong);
    const auto area = torch::bincount(idx, {}, count + 1);
    const auto hit = torch::bincount(idx, on[i].flatten().to(torch::kDouble), count + 1);
    for (int64_t r = 1; r <= count; ++r) {
      const double h = hit[r].item<double>();
      overlap += h / static_cast<double>(area[r].item<int64_t>());
      touched += h > 0;
    }
    d.defect_regions += count;
  }
  if (d.defect_regions > 0) {
    d.region_overlap = overlap / static_cast<double>(d.defect_regions);
    d.defects_touched = static_cast<double>(touched) / static_cast<double>(d.defect_regions);
  }
  if (d.good_images > 0) {
    d.good_images_with_regions = static_cast<double>(with_regions) / static_cast<double>(d.good_images);
    d.good_pixel_rate = static_cast<double>(good_on) / static_cast<double>(d.good_images * maps.size(1) * maps.size(2));
  }
  return d;
}

double aupro(const torch::Tensor& maps, const torch::Tensor& masks, int64_t steps, double max_fpr, ProRegions mode) {
  return aupro(pro_curve(maps, masks, steps, mode), max_fpr);
}

double aupro(const ProCurve& curve, double max_fpr) {
  std::vector<double> fprs, pros;
  for (size_t i = 0; i < curve.fpr.size(); ++i) {
    if (curve.fpr[i] <= max_fpr) {
      fprs.push_back(curve.fpr[i]);
      pros.push_back(curve.pro[i]);
    }
  }
  if (fprs.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  const auto [fmin, fmax] = std::minmax_element(fprs.begin(), fprs.end());
  const double span = *fmax - *fmin;
  if (span <= 0) return std::numeric_limits<double>::quiet_NaN();
  const double base = *fmin;
  double area = 0;
  for (size_t i = 1; i < fprs.size(); ++i) {
    area += ((fprs[i] - base) / span - (fprs[i - 1] - base) / span) * (pros[i] + pros[i - 1]) / 2.0;
  }
  return area;
}

RocCurve roc_curve(const std::vector<double>& scores, const std::vector<int>& labels) {
  if (scores.size() != labels.size()) throw std::invalid_argument("roc_curve: scores and labels differ in size");
  const auto order = descending(scores);
  double positives = 0;
  for (int l : labels) positives += l != 0;
  const double negatives = static_cast<double>(scores.size()) - positives;
  RocCurve c;
  c.fpr.push_back(0);
  c.tpr.push_back(0);
  double tp = 0, fp = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    (labels[order[k]] != 0 ? tp : fp) += 1;
    if (k + 1 < order.size() && scores[order[k + 1]] == scores[order[k]]) continue;
    c.fpr.push_back(negatives > 0 ? fp / negatives : 0);
    c.tpr.push_back(positives > 0 ? tp / positives : 0);
  }
  return c;
}

namespace {

double ratio(int64_t num, int64_t den) {
  return den > 0 ? static_cast<double>(num) / static_cast<double>(den) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

double Decisions::false_alarm_rate() const { return ratio(false_positives, false_positives + true_negatives); }
double Decisions::miss_rate() const { return ratio(false_negatives, false_negatives + true_positives); }
double Decisions::precision() const { return ratio(true_positives, true_positives + false_positives); }
double Decisions::recall() const { return ratio(true_positives, true_positives + false_negatives); }
double Decisions::f1() const {
  return ratio(2 * true_positives, 2 * true_positives + false_positives + false_negatives);
}

Decisions decide_at(const std::vector<double>& scores, const std::vector<int>& labels, double threshold) {
  if (scores.size() != labels.size()) throw std::invalid_argument("decide_at: scores and labels differ in size");
  Decisions d;
  d.threshold = threshold;
  for (size_t i = 0; i < scores.size(); ++i) {
    const bool called = scores[i] >= threshold;
    if (labels[i] != 0)
      (called ? d.true_positives : d.false_negatives)++;
    else
      (called ? d.false_positives : d.true_negatives)++;
  }
  return d;
}

Decisions best_f1(const std::vector<double>& scores, const std::vector<int>& labels) {
  if (scores.size() != labels.size()) throw std::invalid_argument("best_f1: scores and labels differ in size");
  const auto order = descending(scores);
  int64_t positives = 0;
  for (int l : labels) positives += l != 0;
  Decisions best = decide_at(scores, labels, std::numeric_limits<double>::infinity());
  best.threshold = std::numeric_limits<double>::quiet_NaN();
  if (positives == 0) return best;
  Decisions at;  // decisions at the threshold of the scores seen so far
  at.false_negatives = positives;
  at.true_negatives = static_cast<int64_t>(scores.size()) - positives;
  double best_f1_value = -1.0;
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t i = order[k];
    if (labels[i] != 0) {
      at.true_positives++;
      at.false_negatives--;
    } else {
      at.false_positives++;
      at.true_negatives--;
    }
    // a threshold lies between distinct scores only: wait for the last of equal ones
    if (k + 1 < order.size() && scores[order[k + 1]] == scores[i]) continue;
    at.threshold = scores[i];
    if (at.f1() > best_f1_value) {
      best_f1_value = at.f1();
      best = at;
    }
  }
  return best;
}

}  // namespace pefm
