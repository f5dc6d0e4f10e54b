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

double aupro(const torch::Tensor& maps, const torch::Tensor& masks, int64_t steps, double max_fpr) {
  TORCH_CHECK(maps.dim() == 3 && maps.sizes() == masks.sizes(), "aupro needs maps and masks of one [N, H, W] shape, got ",
              maps.sizes(), " and ", masks.sizes());
  TORCH_CHECK(steps > 1, "aupro needs at least two thresholds");
  const auto m = maps.detach().cpu().to(torch::kFloat64).contiguous();
  const auto gt = masks.detach().cpu().ne(0).contiguous();
  // Sorted scores of all negative pixels, and of each region: every threshold's counts are
  // then two binary searches, so 1000 thresholds cost no more than one pass.
  const auto negatives = std::get<0>(m.masked_select(gt.logical_not()).sort()).contiguous();
  std::vector<torch::Tensor> regions;
  for (int64_t i = 0; i < m.size(0); ++i) {
    auto [labels, count] = label_regions(gt[i]);
    for (int32_t r = 1; r <= count; ++r) {
      regions.push_back(std::get<0>(m[i].masked_select(labels.eq(r)).sort()).contiguous());
    }
  }
  if (regions.empty() || negatives.numel() == 0) return std::numeric_limits<double>::quiet_NaN();
  const auto above = [](const torch::Tensor& sorted, double th) {
    const auto* v = sorted.data_ptr<double>();
    const int64_t n = sorted.numel();
    return static_cast<double>(n - (std::upper_bound(v, v + n, th) - v));
  };
  const double hi = m.max().item<double>(), lo = m.min().item<double>();
  const double delta = (hi - lo) / static_cast<double>(steps);
  if (delta <= 0) return std::numeric_limits<double>::quiet_NaN();
  // numpy.arange(hi, lo, -delta): ceil((lo - hi) / -delta) values hi - i * delta.
  const auto count = static_cast<int64_t>(std::ceil((lo - hi) / -delta));
  std::vector<double> fprs, pros;
  for (int64_t i = 0; i < count; ++i) {
    const double th = hi - static_cast<double>(i) * delta;
    const double fpr = above(negatives, th) / static_cast<double>(negatives.numel());
    double pro = 0;
    for (const auto& r : regions) pro += above(r, th) / static_cast<double>(r.numel());
    if (fpr <= max_fpr) {
      fprs.push_back(fpr);
      pros.push_back(pro / static_cast<double>(regions.size()));
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
  std::vector<size_t> order(scores.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
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
