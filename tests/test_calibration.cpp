#include <gtest/gtest.h>
#include <cmath>
#include <numeric>
#include <random>
#include <torch/torch.h>
#include <ATen/CPUGeneratorImpl.h>

#include "pefm/calibration_maps.h"

namespace {

TEST(Calibration, ThresholdMapsToHalfAndBaseToZero) {
  // Image scores 1..5: mean 3, sample std sqrt(2.5); pixels uniform 0..1 (median 0.5).
  const auto scores = torch::tensor({1.0, 2.0, 3.0, 4.0, 5.0});
  // (in double: float32 linspace rounds differently across LibTorch versions)
  const auto maps = torch::linspace(0, 1, 5 * 100, torch::kFloat64).view({5, 10, 10});
  const auto c = pefm::calibration_from_normal(maps, scores);
  ASSERT_TRUE(c.valid);
  EXPECT_NEAR(c.threshold, 3.0 + 3.0 * std::sqrt(2.5), 1e-9);
  EXPECT_NEAR(c.base, 0.5, 1e-9);
  EXPECT_NEAR(c.normalize(c.threshold), 0.5, 1e-12);
  EXPECT_NEAR(c.normalize(c.base), 0.0, 1e-12);
  EXPECT_EQ(c.normalize(1e9), 1.0);
  EXPECT_EQ(c.normalize(-1.0), 0.0);
  EXPECT_NEAR(c.denormalize(c.normalize(4.2)), 4.2, 1e-9);
  EXPECT_EQ(c.val_false_positive_rate, 0.0);
  EXPECT_EQ(c.image_quantiles.front(), 1.0);
  EXPECT_EQ(c.image_quantiles[50], 3.0);
  EXPECT_EQ(c.image_quantiles.back(), 5.0);
  const auto t = pefm::normalize_map(c, torch::tensor({c.base, c.threshold, 100.0}));
  EXPECT_TRUE(torch::allclose(t, torch::tensor({0.0, 0.5, 1.0}).to(t.dtype()), 1e-6, 1e-6)) << t;
}

TEST(Calibration, DegenerateScoresStillGiveAnIncreasingMapping) {
  const auto c = pefm::calibration_from_normal(torch::ones({1, 4, 4}), torch::ones({1}));
  EXPECT_GT(c.threshold, c.base);
  EXPECT_LT(c.normalize(0.5), 0.5);
  EXPECT_GT(c.normalize(2.0), 0.5);
}

TEST(Calibration, RejectsEmptyAndNonFiniteInput) {
  EXPECT_THROW(pefm::calibration_from_normal(torch::empty({0, 4, 4}), torch::empty({0})), std::invalid_argument);
  EXPECT_THROW(pefm::calibration_from_normal(torch::full({1, 2, 2}, NAN), torch::ones({1})), std::invalid_argument);
}

TEST(Calibration, UncalibratedPassesRawValuesThrough) {
  pefm::Calibration c;
  EXPECT_EQ(c.normalize(7.5), 7.5);
}

TEST(FalseAlarmThreshold, RankIsTheConformalOrderStatistic) {
  std::vector<double> s;
  for (int i = 1; i <= 99; ++i) s.push_back(100 - i);  // 1..99, shuffled order
  auto t = pefm::conformal_threshold(s, 0.05);  // ceil(100 * 0.95) = 95
  EXPECT_TRUE(t.enough);
  EXPECT_EQ(t.rank, 95);
  EXPECT_DOUBLE_EQ(t.threshold, 95.0);
  EXPECT_NEAR(t.bound, 0.05, 1e-12);
  t = pefm::conformal_threshold({3, 1, 2}, 0.3);  // ceil(4 * 0.7) = 3: the largest
  EXPECT_EQ(t.rank, 3);
  EXPECT_NEAR(t.bound, 0.25, 1e-12);
  // Too few for 1 %: the largest score, and the rate 10 images support, 1/11.
  t = pefm::conformal_threshold(std::vector<double>(10, 1.0), 0.01);
  EXPECT_FALSE(t.enough);
  EXPECT_EQ(t.rank, 10);
  EXPECT_NEAR(t.bound, 1.0 / 11, 1e-12);
  EXPECT_THROW(pefm::conformal_threshold({}, 0.05), std::invalid_argument);
  EXPECT_THROW(pefm::conformal_threshold({1.0, NAN}, 0.05), std::invalid_argument);
  EXPECT_THROW(pefm::conformal_threshold({1.0}, 0.0), std::invalid_argument);
}

// The guarantee itself, by simulation: over many calibration sets of 39 skewed normal
// scores, a new normal score exceeds the threshold for F = 0.1 with probability
// 1 - 36/40 = 0.1. mean + 3 std on the same sets gives no such rate.
TEST(FalseAlarmThreshold, NewNormalScoresExceedItAtTheStatedRate) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const int trials = 4000, n = 39;
  const auto draws = torch::randn({trials, n + 1}, gen).mul(0.8).exp();  // log-normal: right-skewed
  int conformal_alarms = 0, mean3std_alarms = 0, above_upper95 = 0;
  for (int t = 0; t < trials; ++t) {
    const auto row = draws[t];
    std::vector<double> cal(row.data_ptr<float>(), row.data_ptr<float>() + n);
    const double fresh = row[n].item<double>();
    const auto th = pefm::conformal_threshold(cal, 0.1);
    ASSERT_NEAR(th.bound, 0.1, 1e-12);
    conformal_alarms += fresh > th.threshold;
    // This threshold's true false-alarm rate, from the log-normal's own tail, against the
    // 95 % bound given the calibration set (clopper_pearson_upper(n - k, n)).
    const double true_rate = 0.5 * std::erfc(std::log(th.threshold) / 0.8 / std::sqrt(2.0));
    above_upper95 += true_rate > pefm::clopper_pearson_upper(n - th.rank, n);
    const auto c = torch::tensor(cal, torch::kFloat64);
    mean3std_alarms += fresh > (c.mean() + 3 * c.std()).item<double>();
  }
  const double rate = conformal_alarms / double(trials);
  EXPECT_NEAR(rate, 0.1, 0.015);  // binomial sd 0.0047
  // Exceeded in about 5 % of calibration sets (sd 0.0034).
  EXPECT_NEAR(above_upper95 / double(trials), 0.05, 0.012);
  EXPECT_LT(mean3std_alarms / double(trials), 0.05) << "mean + 3 std states no rate; here it is far below 0.1";
}

// With groups of one image each the grouped rule is the image rule (continuous scores: no
// ties).
TEST(FalseAlarmThreshold, GroupsOfOneAreTheImageRule) {
  const auto draws = torch::rand({57}, at::make_generator<at::CPUGeneratorImpl>(11)).to(torch::kFloat64);
  const std::vector<double> s(draws.data_ptr<double>(), draws.data_ptr<double>() + draws.numel());
  std::vector<int64_t> own(s.size());
  std::iota(own.begin(), own.end(), int64_t{100});
  for (double target : {0.01, 0.05, 0.1, 0.3}) {
    const auto a = pefm::conformal_threshold(s, target), b = pefm::conformal_threshold(s, target, own);
    EXPECT_EQ(a.threshold, b.threshold) << target;
    EXPECT_EQ(a.rank, b.rank) << target;
    EXPECT_NEAR(a.bound, b.bound, 1e-12) << target;
    EXPECT_EQ(a.enough, b.enough) << target;
    EXPECT_EQ(b.units, 57);
    EXPECT_DOUBLE_EQ(a.above, b.above) << target;
  }
}

// Groups are the units: an image weighs 1 / |its group|, and the groups (not the images)
// set what the data supports.
TEST(FalseAlarmThreshold, GroupsAreTheUnits) {
  const std::vector<double> s = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<int64_t> g = {0, 0, 1, 1, 2, 2, 3, 3};
  // (W + 1) / 5 <= 0.4: W(6) = 1 (7 and 8, half a group each), W(5) = 1.5.
  auto t = pefm::conformal_threshold(s, 0.4, g);
  EXPECT_TRUE(t.enough);
  EXPECT_DOUBLE_EQ(t.threshold, 6.0);
  EXPECT_EQ(t.rank, 6);
  EXPECT_EQ(t.units, 4);
  EXPECT_DOUBLE_EQ(t.above, 1.0);
  EXPECT_NEAR(t.bound, 0.4, 1e-12);
  // As 8 separate images the same target allows 3 above: rank ceil(9 * 0.6) = 6, bound 1/3.
  EXPECT_NEAR(pefm::conformal_threshold(s, 0.4).bound, 1.0 / 3, 1e-12);
  // 4 groups support 1/5 at best; 8 images would support 1/9.
  t = pefm::conformal_threshold(s, 0.15, g);
  EXPECT_FALSE(t.enough);
  EXPECT_DOUBLE_EQ(t.threshold, 8.0);
  EXPECT_NEAR(t.bound, 0.2, 1e-12);
  EXPECT_TRUE(pefm::conformal_threshold(s, 0.15).enough);
  // Ties: equal scores are never above one another.
  t = pefm::conformal_threshold({1, 2, 2, 2, 3}, 0.5, {0, 1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(t.threshold, 2.0);
  EXPECT_EQ(t.rank, 4);
  EXPECT_NEAR(t.bound, 2.0 / 6, 1e-12);
  EXPECT_THROW(pefm::conformal_threshold(s, 0.4, {0, 1}), std::invalid_argument);

  pefm::Calibration c;
  c.set_false_alarm_threshold(s, 0.4, 2, g);
  EXPECT_EQ(c.groups, 4);
  EXPECT_DOUBLE_EQ(c.false_alarm_upper95, pefm::clopper_pearson_upper(1, 4));
  c.set_false_alarm_threshold(s, 0.4, 2);
  EXPECT_EQ(c.groups, 8);
}

// The grouped guarantee by simulation: a production line where some parts are photographed
// once and others nine times, and the once-photographed parts score higher (another
// fixture, say). A new image comes from a new part. Pooling images as if each were its own
// part lets the nine-image parts set the threshold, and new images exceed it far more often
// than stated; the grouped rule holds the rate for images of new parts.
TEST(FalseAlarmThreshold, GroupedRuleHoldsForImagesOfNewGroups) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const int trials = 3000, m = 40;
  int grouped_alarms = 0, pooled_alarms = 0;
  for (int trial = 0; trial < trials; ++trial) {
    // m + 1 parts: part m is the new one. Size 1 or 9 with equal odds; a part's offset
    // (N(0, 1), + 1.5 for single captures) shared by its images, plus N(0, 0.3) each.
    const auto kind = torch::rand({m + 1}, gen).lt(0.5);
    const auto offset = torch::randn({m + 1}, gen).to(torch::kFloat64) + kind.to(torch::kFloat64) * 1.5;
    std::vector<double> s;
    std::vector<int64_t> g;
    double fresh = 0;
    for (int p = 0; p <= m; ++p) {
      const int size = kind[p].item<bool>() ? 1 : 9;
      const auto v = offset[p] + torch::randn({size}, gen).to(torch::kFloat64) * 0.3;
      if (p == m) {
        fresh = v[torch::randint(size, {1}, gen).item<int64_t>()].item<double>();
        break;
      }
      for (int i = 0; i < size; ++i) {
        s.push_back(v[i].item<double>());
        g.push_back(p);
      }
    }
    grouped_alarms += fresh > pefm::conformal_threshold(s, 0.1, g).threshold;
    pooled_alarms += fresh > pefm::conformal_threshold(s, 0.1).threshold;
  }
  const double grouped = grouped_alarms / double(trials), pooled = pooled_alarms / double(trials);
  EXPECT_LE(grouped, 0.1 + 0.011) << "binomial sd 0.0055";
  EXPECT_GE(grouped, 0.06) << "the grouped rule should not be far more careful than it says";
  EXPECT_GT(pooled, 0.15) << "pooling images of unequal parts should break the stated rate here";
}

TEST(FalseAlarmThreshold, ClopperPearsonUpperBound) {
  EXPECT_NEAR(pefm::clopper_pearson_upper(0, 10), 1 - std::pow(0.05, 0.1), 1e-9);  // (1-p)^n = 0.05
  EXPECT_NEAR(pefm::clopper_pearson_upper(0, 188), 1 - std::pow(0.05, 1.0 / 188), 1e-9);
  EXPECT_DOUBLE_EQ(pefm::clopper_pearson_upper(5, 5), 1.0);
  // k = 1, n = 20: (1-p)^20 + 20 p (1-p)^19 = 0.05 at p = 0.2161
  EXPECT_NEAR(pefm::clopper_pearson_upper(1, 20), 0.21611, 1e-4);
  EXPECT_LT(pefm::clopper_pearson_upper(1, 20), pefm::clopper_pearson_upper(2, 20));
}

TEST(FalseAlarmThreshold, SetOnACalibrationKeepsBaseBelowAndRecordsTheEstimate) {
  auto maps = torch::rand({20, 8, 8}, at::make_generator<at::CPUGeneratorImpl>(3));
  auto c = pefm::calibration_from_normal(maps, std::get<0>(maps.flatten(1).max(1)));
  std::vector<double> scores;
  for (int i = 0; i < 20; ++i) scores.push_back(0.01 * i);  // all below the median pixel
  c.set_false_alarm_threshold(scores, 0.1, 4);
  EXPECT_EQ(c.method, "conformal");
  EXPECT_DOUBLE_EQ(c.threshold, 0.18);  // rank ceil(21 * 0.9) = 19
  EXPECT_LT(c.base, c.threshold);
  EXPECT_NEAR(c.normalize(0.18), 0.5, 1e-12);
  EXPECT_NEAR(c.false_alarm_bound, 1 - 19.0 / 21, 1e-12);
  EXPECT_EQ(c.folds, 4);
  EXPECT_DOUBLE_EQ(c.val_false_positive_rate, 0.05);
  EXPECT_DOUBLE_EQ(c.false_alarm_upper95, pefm::clopper_pearson_upper(1, 20));  // n - k = 1
}

// The region threshold: a quantile of normal pixel scores with a scale of its own, where
// 0.5 is the threshold and 0 the median normal pixel; without one (older files) the region
// scale is the image scale, so regions are cut where they always were.
TEST(RegionThreshold, IsTheConformalQuantileOfNormalPixelsOnItsOwnScale) {
  const auto maps = torch::linspace(0, 1, 4 * 2500, torch::kFloat64).view({4, 50, 50});  // 10,000 pixels
  const std::vector<double> image_scores = {0.2, 0.97, 0.991, 1.0};
  auto c = pefm::calibration_from_normal(maps, torch::tensor(image_scores));
  c.set_false_alarm_threshold({0.5, 0.6, 0.7, 0.8, 0.9, 1.0}, 0.2, 2);
  EXPECT_DOUBLE_EQ(c.region_raw(0.5), c.threshold) << "no region threshold yet: the image threshold";
  EXPECT_DOUBLE_EQ(c.region_raw(0.8), c.denormalize(0.8));
  pefm::set_region_threshold(c, maps, image_scores, 0.01);
  // rank ceil(10001 * 0.99) = 9901 of 10,000 evenly spaced values: 9900 / 9999
  EXPECT_NEAR(c.region_threshold, 9900.0 / 9999, 1e-12);
  EXPECT_DOUBLE_EQ(c.region_rate_target, 0.01);
  EXPECT_EQ(c.region_pixels, 10000);
  EXPECT_NEAR(c.region_rate, 100.0 / 10000, 1e-12);  // 9901..10000 lie at or above it
  EXPECT_DOUBLE_EQ(c.region_image_rate, 0.5);       // 0.991 and 1.0 hold a region
  EXPECT_DOUBLE_EQ(c.region_raw(0.5), c.region_threshold);
  EXPECT_DOUBLE_EQ(c.region_raw(0.0), c.base);
  EXPECT_NEAR(c.region_raw(1.0), 2 * c.region_threshold - c.base, 1e-12);
  EXPECT_NEAR(c.normalize(c.threshold), 0.5, 1e-12) << "the image scale is untouched";
  // region_cut keeps the level where the normalised map resolves it: above the base, at
  // most the raw score of normalised 1.
  EXPECT_DOUBLE_EQ(c.region_cut(0.5), c.region_threshold);
  EXPECT_GT(c.region_cut(0.0), c.base);
  EXPECT_GT(c.normalize(c.region_cut(0.0)), 0.0);
  c.region_threshold = 2 * c.threshold;  // region-threshold 1 would lie beyond the map's top
  EXPECT_DOUBLE_EQ(c.region_cut(1.0), 2 * c.threshold - c.base);
  EXPECT_DOUBLE_EQ(c.normalize(c.region_cut(1.0)), 1.0);
  pefm::set_region_threshold(c, maps, image_scores, 0.01);
  EXPECT_THROW(pefm::set_region_threshold(c, maps, image_scores, 0.0), std::invalid_argument);
  EXPECT_THROW(pefm::set_region_threshold(c, maps, image_scores, 0.6), std::invalid_argument);
  EXPECT_THROW(pefm::set_region_threshold(c, torch::full({1, 2, 2}, NAN), {1.0}, 0.01), std::invalid_argument);
  EXPECT_THROW(pefm::set_region_threshold(c, maps, {}, 0.01), std::invalid_argument);
  pefm::Calibration raw;
  EXPECT_EQ(raw.region_raw(0.3), 0.3) << "uncalibrated: the value itself";
  EXPECT_EQ(raw.region_cut(0.3), 0.3);
}

TEST(RegionThreshold, StaysAboveTheBaseForAHighRate) {
  auto maps = torch::zeros({2, 10, 10}, torch::kFloat64);
  maps[0][0][0] = 1.0;
  auto c = pefm::calibration_from_normal(maps, torch::tensor({1.0, 0.0}));
  pefm::set_region_threshold(c, maps, {1.0, 0.0}, 0.5);  // the quantile is the median, 0 = base
  EXPECT_GT(c.region_threshold, c.base);
  EXPECT_LT(c.region_raw(0.25), c.region_raw(0.5));
}

// What validate() refuses, no writer makes: random normal maps and their scores, at any
// rate, fold count and grouping pefm-train accepts, always give a calibration that passes.
TEST(CalibrationValidate, EveryCalibrationPefmWritesPasses) {
  std::mt19937_64 rng(5);
  torch::manual_seed(5);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t n = 2 + static_cast<int64_t>(rng() % 60);
    // Scales down to residuals of 1e-9, and all-zero maps (identical scores).
    const double scales[] = {0.0, 1e-9, 1e-4, 0.1, 1.0, 10.0};
    const auto maps = torch::rand({n, 8, 8}, torch::kFloat64) * scales[rng() % 6];
    const auto scores_t = std::get<0>(maps.flatten(1).max(1));
    std::vector<double> scores(scores_t.data_ptr<double>(), scores_t.data_ptr<double>() + n);
    std::vector<int64_t> group;
    int64_t m = n;
    if (rng() % 2) {  // parts of 1..4 images
      m = 0;
      for (int64_t i = 0; i < n; ++m) {
        const int64_t size = 1 + static_cast<int64_t>(rng() % 4);
        for (int64_t j = 0; j < size && i < n; ++j, ++i) group.push_back(m);
      }
    }
    if (m < 2) continue;
    const double rates[] = {0.001, 0.01, 0.05, 0.2, 0.5};
    const int64_t folds = 2 + static_cast<int64_t>(rng() % static_cast<uint64_t>(std::min<int64_t>(m - 1, 9)));
    auto c = pefm::calibration_from_normal(maps, scores_t);
    c.set_false_alarm_threshold(scores, rates[rng() % 5], folds, group);
    pefm::set_region_threshold(c, maps, scores, rates[rng() % 5]);
    SCOPED_TRACE("trial " + std::to_string(trial) + ": " + std::to_string(n) + " images, " + std::to_string(m) +
                 " groups, " + std::to_string(folds) + " folds");
    EXPECT_NO_THROW(c.validate());
  }
}

}  // namespace
