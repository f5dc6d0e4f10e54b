#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "common.h"
#include "pefm/metrics.h"
#include "pefm/postprocess.h"
#include "pefm/state_dict.h"

namespace {

using pefm::aupro;
using pefm::auroc;

TEST(Auroc, PerfectAndInvertedRankings) {
  EXPECT_DOUBLE_EQ(auroc(torch::tensor({0.1, 0.2, 0.8, 0.9}), torch::tensor({0, 0, 1, 1})), 1.0);
  EXPECT_DOUBLE_EQ(auroc(torch::tensor({0.9, 0.8, 0.2, 0.1}), torch::tensor({0, 0, 1, 1})), 0.0);
}

TEST(Auroc, TiesCountOneHalf) {
  // Pairs (pos, neg): (0.5, 0.5) tie = 0.5, (0.5, 0.2) = 1, (0.9, 0.5) = 1, (0.9, 0.2) = 1 -> 3.5 / 4.
  EXPECT_DOUBLE_EQ(auroc(torch::tensor({0.2, 0.5, 0.5, 0.9}), torch::tensor({0, 0, 1, 1})), 0.875);
}

TEST(Auroc, AllEqualScoresGiveOneHalf) {
  EXPECT_DOUBLE_EQ(auroc(torch::full({10}, 3.0), torch::tensor({0, 1, 0, 1, 1, 0, 0, 0, 1, 0})), 0.5);
}

TEST(Auroc, OneClassOnlyIsUndefined) {
  EXPECT_TRUE(std::isnan(auroc(torch::tensor({0.1, 0.2}), torch::tensor({1, 1}))));
  EXPECT_THROW(auroc(torch::tensor({0.1, 0.2}), torch::tensor({1})), c10::Error);
}

TEST(Auroc, MatchesSklearnWithHeavyTies) {
  const auto g = pefm::read_state_dict(pefm_test::data_dir() + "/golden/metrics.pt");
  EXPECT_NEAR(auroc(g.at("auroc_scores"), g.at("auroc_labels")), g.at("auroc_expected").item<double>(), 1e-12);
  EXPECT_NEAR(auroc(g.at("aupro_maps"), g.at("aupro_masks")), g.at("pixel_auroc_expected").item<double>(), 1e-12);
}

TEST(Regions, EightConnectivityJoinsDiagonals) {
  auto m = torch::zeros({5, 5}, torch::kUInt8);
  m[0][0] = 1;
  m[1][1] = 1;  // diagonal neighbour: same region
  m[3][3] = 1;
  m[3][4] = 1;
  m[0][4] = 1;
  const auto [labels, count] = pefm::label_regions(m);
  EXPECT_EQ(count, 3);
  EXPECT_EQ(labels[0][0].item<int>(), labels[1][1].item<int>());
  EXPECT_NE(labels[0][0].item<int>(), labels[3][3].item<int>());
  EXPECT_EQ(labels[2][2].item<int>(), 0);
}

// Regions are cut at the region threshold, apart from the image decision: a normal frame
// can hold a region, an anomalous one none; their peaks are on the image scale.
TEST(Postprocess, RegionsAreCutAtTheRegionThresholdNotTheImageThreshold) {
  pefm::Calibration c;
  c.valid = true;
  c.base = 0.0;
  c.threshold = 1.0;         // image scale: raw 1 -> 0.5
  c.region_threshold = 0.3;  // region scale: raw 0.3 -> 0.5
  auto raw = torch::zeros({20, 20});
  raw.slice(0, 2, 6).slice(1, 2, 6).fill_(0.5);  // a blob under the image threshold
  auto r = pefm::postprocess(raw, c, {0.5, 0.5}, 40, 40);
  EXPECT_FALSE(r.anomalous);
  ASSERT_EQ(r.regions.size(), 1u);
  EXPECT_EQ(r.regions[0].x, 4);
  EXPECT_EQ(r.regions[0].width, 8);
  EXPECT_FLOAT_EQ(r.regions[0].peak, 0.25f);  // normalize(0.5) on the image scale
  EXPECT_FLOAT_EQ(r.region_level, 0.15f);     // raw 0.3 on the map's scale
  // region-threshold 1: raw 0.6, above the blob.
  r = pefm::postprocess(raw, c, {0.5, 1.0}, 40, 40);
  EXPECT_TRUE(r.regions.empty());
  EXPECT_FLOAT_EQ(r.region_level, 0.3f);
  // An anomalous frame whose peak is a single pixel: at region-threshold 1 (raw 0.6) that
  // pixel is a region, the blob is not.
  raw[10][10] = 1.5;
  r = pefm::postprocess(raw, c, {0.5, 1.0}, 40, 40);
  EXPECT_TRUE(r.anomalous);
  ASSERT_EQ(r.regions.size(), 1u);
  EXPECT_EQ(r.regions[0].area, 4);
  // Region-threshold 0 cuts just above the median normal pixel (the base): the blob and
  // the pixel, not the background at the base itself.
  r = pefm::postprocess(raw, c, {0.5, 0.0}, 40, 40);
  ASSERT_EQ(r.regions.size(), 2u);
  EXPECT_GT(r.region_level, 0.0f);
  // A region threshold above the image threshold: the frame is anomalous, with no region.
  c.region_threshold = 0.9;  // region-threshold 1: raw 1.8
  r = pefm::postprocess(raw, c, {0.5, 1.0}, 40, 40);
  EXPECT_TRUE(r.anomalous);
  EXPECT_TRUE(r.regions.empty());
  // Beyond the map's top (raw 2 = normalised 1) regions are cut at the top, so the
  // contours drawn from the normalised map (map >= region_level) are the regions.
  c.region_threshold = 1.5;  // region-threshold 1: raw 3, above 2 T - base = 2
  raw[15][15] = 2.5;
  r = pefm::postprocess(raw, c, {0.5, 1.0}, 40, 40);
  EXPECT_FLOAT_EQ(r.region_level, 1.0f);
  ASSERT_EQ(r.regions.size(), 1u);
  EXPECT_EQ(r.regions[0].y, 30);
  for (double setting : {0.0, 0.3, 0.5, 0.8, 1.0}) {
    r = pefm::postprocess(raw, c, {0.5, setting}, 40, 40);
    const auto map = torch::from_blob(r.map.data(), {20, 20}, torch::kFloat32).clone();
    const auto from_map = pefm::map_regions(map, r.region_level, 40, 40);
    ASSERT_EQ(from_map.size(), r.regions.size()) << "region-threshold " << setting;
    for (size_t i = 0; i < from_map.size(); ++i) {
      EXPECT_EQ(from_map[i].area, r.regions[i].area) << "region-threshold " << setting;
      EXPECT_EQ(from_map[i].x, r.regions[i].x) << "region-threshold " << setting;
    }
  }
  raw[15][15] = 0.0;
  // Without a region threshold (older files) regions come from the image threshold.
  c.region_threshold = NAN;
  r = pefm::postprocess(raw, c, {0.5, 0.5}, 40, 40);
  ASSERT_EQ(r.regions.size(), 1u);
  EXPECT_EQ(r.regions[0].area, 4);
  EXPECT_FLOAT_EQ(r.region_level, 0.5f);
}

TEST(RegionsAt, CountOutlinedPixelsRegionsAndGoodImages) {
  auto maps = torch::zeros({3, 10, 10});
  auto masks = torch::zeros({3, 10, 10}, torch::kUInt8);
  masks[0].slice(0, 0, 2).slice(1, 0, 5).fill_(1);  // region A: 10 pixels, 5 outlined
  maps[0].slice(0, 0, 1).slice(1, 0, 5).fill_(1.0);
  masks[0].slice(0, 8, 10).slice(1, 8, 10).fill_(1);  // region B: 4 pixels, none outlined
  maps[1][5][5] = 1.0;                                 // good image 1: one false pixel
  const auto d = pefm::regions_at(maps, masks, {1, 0, 0}, 0.5);
  EXPECT_EQ(d.defect_regions, 2);
  EXPECT_DOUBLE_EQ(d.region_overlap, (0.5 + 0.0) / 2);
  EXPECT_DOUBLE_EQ(d.defects_touched, 0.5);
  EXPECT_DOUBLE_EQ(d.pixel_recall, 5.0 / 14);
  EXPECT_DOUBLE_EQ(d.pixel_false_alarm_rate, 1.0 / 286);
  EXPECT_EQ(d.good_images, 2);
  EXPECT_DOUBLE_EQ(d.good_images_with_regions, 0.5);
  EXPECT_DOUBLE_EQ(d.good_pixel_rate, 1.0 / 200);
  EXPECT_THROW(pefm::regions_at(maps, masks, {1, 0}, 0.5), std::invalid_argument);
}

TEST(Aupro, OneRegionPerfectlySeparatedScoresOne) {
  auto masks = torch::zeros({1, 20, 20}, torch::kUInt8);
  masks[0].slice(0, 5, 10).slice(1, 5, 10).fill_(1);
  const auto maps = masks.to(torch::kFloat32) * 0.5 + 0.25;  // defect 0.75, rest 0.25
  // Every threshold between the two levels has PRO 1 at FPR 0, then FPR jumps to 1 > 0.3:
  // the kept points all have FPR 0, so the rescaled curve is degenerate.
  EXPECT_TRUE(std::isnan(aupro(maps, masks)));
  // A graded background (0 .. 0.5) below the defect (0.75): FPR rises smoothly to 0.3
  // while every region is fully covered, so the rescaled curve is flat at PRO 1: area 1.
  auto graded = torch::linspace(0.0, 0.5, 400).view({1, 20, 20});
  graded[0].slice(0, 5, 10).slice(1, 5, 10).fill_(0.75);
  EXPECT_NEAR(aupro(graded, masks), 1.0, 1e-9);
}

TEST(Aupro, RegionsOfVeryDifferentSizesWeighEqually) {
  // A 1-pixel region found and a 100-pixel region missed: PRO is the mean over regions,
  // 0.5, not the pixel-weighted 1/101.
  auto masks = torch::zeros({1, 30, 30}, torch::kUInt8);
  masks[0][2][2] = 1;
  masks[0].slice(0, 10, 20).slice(1, 10, 20).fill_(1);
  auto maps = torch::linspace(0, 0.5, 900).view({1, 30, 30});
  maps[0][2][2] = 1.0;
  maps[0].slice(0, 10, 20).slice(1, 10, 20).fill_(0.0);
  const double v = aupro(maps, masks);
  EXPECT_GT(v, 0.45);
  EXPECT_LT(v, 0.55);
}

TEST(Aupro, NoDefectRegionsIsUndefined) {
  EXPECT_TRUE(std::isnan(aupro(torch::rand({2, 8, 8}), torch::zeros({2, 8, 8}))));
}

TEST(Aupro, MatchesTheReferenceEvaluator) {
  const auto g = pefm::read_state_dict(pefm_test::data_dir() + "/golden/metrics.pt");
  const auto masks = g.at("aupro_masks");
  for (int64_t i = 0; i < masks.size(0); ++i) {
    EXPECT_EQ(pefm::label_regions(masks[i]).second, g.at("regions_expected")[i].item<int64_t>()) << "image " << i;
  }
  // The authors' count (predicted pixels in each region's filled image) and the exact one
  // differ on the ring of image 4, whose hole is scored high.
  const double filled = aupro(g.at("aupro_maps"), masks);
  const double exact = aupro(g.at("aupro_maps"), masks, 1000, 0.3, pefm::ProRegions::kExact);
  EXPECT_NEAR(filled, g.at("aupro_expected").item<double>(), 1e-6);
  EXPECT_NEAR(exact, g.at("aupro_exact_expected").item<double>(), 1e-6);
  EXPECT_GT(std::abs(filled - exact), 1e-3);
}

TEST(Aupro, AFilledRegionCountsItsHoleOverItsOwnArea) {
  // A 5x5 ring (16 pixels) around a 3x3 hole; the map is high in the hole only.
  auto masks = torch::zeros({1, 9, 9}, torch::kUInt8);
  masks.index_put_({0, torch::indexing::Slice(2, 7), torch::indexing::Slice(2, 7)}, 1);
  masks.index_put_({0, torch::indexing::Slice(3, 6), torch::indexing::Slice(3, 6)}, 0);
  auto maps = torch::zeros({1, 9, 9});
  maps.index_put_({0, torch::indexing::Slice(3, 6), torch::indexing::Slice(3, 6)}, 1.0);
  maps[0][0][0] = -1.0;  // a spread of scores, so there are thresholds between 0 and 1
  const auto filled = pefm::pro_curve(maps, masks, 10);
  const auto exact = pefm::pro_curve(maps, masks, 10, pefm::ProRegions::kExact);
  ASSERT_FALSE(filled.pro.empty());
  // At a threshold in (0, 1) the 9 hole pixels are predicted: 9 / 16 filled, 0 exact.
  for (size_t i = 0; i < filled.thresholds.size(); ++i) {
    if (filled.thresholds[i] > 0.0 && filled.thresholds[i] < 1.0) {
      EXPECT_NEAR(filled.pro[i], 9.0 / 16.0, 1e-12);
      EXPECT_NEAR(exact.pro[i], 0.0, 1e-12);
    }
  }
}

TEST(Roc, CurveRunsFromTheOriginToOneOneThroughEachDistinctScore) {
  const auto c = pefm::roc_curve({0.9, 0.8, 0.8, 0.1}, {1, 0, 1, 0});
  const std::vector<double> fpr = {0.0, 0.0, 0.5, 1.0}, tpr = {0.0, 0.5, 1.0, 1.0};
  EXPECT_EQ(c.fpr, fpr);
  EXPECT_EQ(c.tpr, tpr);
}

}  // namespace

TEST(Decisions, RatesAtAThresholdCountTiesAsDefective) {
  //                              good good good good  bad  bad  bad
  const std::vector<double> scores = {0.1, 0.2, 0.6, 0.5, 0.5, 0.9, 0.3};
  const std::vector<int> labels = {0, 0, 0, 0, 1, 1, 1};
  const auto d = pefm::decide_at(scores, labels, 0.5);
  EXPECT_EQ(d.true_positives, 2);
  EXPECT_EQ(d.false_negatives, 1);
  EXPECT_EQ(d.false_positives, 2);  // 0.6 and 0.5 (a tie is called defective)
  EXPECT_EQ(d.true_negatives, 2);
  EXPECT_DOUBLE_EQ(d.false_alarm_rate(), 0.5);
  EXPECT_DOUBLE_EQ(d.miss_rate(), 1.0 / 3);
  EXPECT_DOUBLE_EQ(d.precision(), 0.5);
  EXPECT_DOUBLE_EQ(d.recall(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(d.f1(), 4.0 / 7);
  const auto none = pefm::decide_at(scores, labels, 2.0);
  EXPECT_TRUE(std::isnan(none.precision()));  // nothing called defective
  EXPECT_DOUBLE_EQ(none.false_alarm_rate(), 0.0);
  EXPECT_THROW(pefm::decide_at({0.1}, {0, 1}, 0.5), std::invalid_argument);
}

TEST(Decisions, BestF1IsFoundAmongTheScoresAndPrefersTheHigherThreshold) {
  const std::vector<double> scores = {0.1, 0.2, 0.6, 0.5, 0.5, 0.9, 0.3};
  const std::vector<int> labels = {0, 0, 0, 0, 1, 1, 1};
  // Brute force over every score as threshold.
  double best = -1, at = 0;
  for (double t : {0.9, 0.6, 0.5, 0.3, 0.2, 0.1}) {
    const double f = pefm::decide_at(scores, labels, t).f1();
    if (f > best) best = f, at = t;
  }
  const auto d = pefm::best_f1(scores, labels);
  EXPECT_DOUBLE_EQ(d.f1(), best);
  EXPECT_DOUBLE_EQ(d.threshold, at);
  EXPECT_EQ(d.true_positives + d.false_negatives, 3);
  // Separable: F1 1 at the lowest defective score.
  const auto s = pefm::best_f1({0.1, 0.2, 0.7, 0.8}, {0, 0, 1, 1});
  EXPECT_DOUBLE_EQ(s.f1(), 1.0);
  EXPECT_DOUBLE_EQ(s.threshold, 0.7);
  EXPECT_TRUE(std::isnan(pefm::best_f1({0.1, 0.2}, {0, 0}).threshold));
}
