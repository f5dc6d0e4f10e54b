#include <gtest/gtest.h>
#include <torch/torch.h>

#include "pefm/calibration.h"

namespace {

TEST(Calibration, ThresholdMapsToHalfAndBaseToZero) {
  // Image scores 1..5: mean 3, sample std sqrt(2.5); pixels uniform 0..1 (median 0.5).
  const auto scores = torch::tensor({1.0, 2.0, 3.0, 4.0, 5.0});
  const auto maps = torch::linspace(0, 1, 5 * 100).view({5, 10, 10});
  const auto c = pefm::Calibration::from_normal(maps, scores);
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
  const auto t = c.normalize(torch::tensor({c.base, c.threshold, 100.0}));
  EXPECT_TRUE(torch::allclose(t, torch::tensor({0.0, 0.5, 1.0}).to(t.dtype()), 1e-6, 1e-6)) << t;
}

TEST(Calibration, DegenerateScoresStillGiveAnIncreasingMapping) {
  const auto c = pefm::Calibration::from_normal(torch::ones({1, 4, 4}), torch::ones({1}));
  EXPECT_GT(c.threshold, c.base);
  EXPECT_LT(c.normalize(0.5), 0.5);
  EXPECT_GT(c.normalize(2.0), 0.5);
}

TEST(Calibration, RejectsEmptyAndNonFiniteInput) {
  EXPECT_THROW(pefm::Calibration::from_normal(torch::empty({0, 4, 4}), torch::empty({0})), std::invalid_argument);
  EXPECT_THROW(pefm::Calibration::from_normal(torch::full({1, 2, 2}, NAN), torch::ones({1})), std::invalid_argument);
}

TEST(Calibration, UncalibratedPassesRawValuesThrough) {
  pefm::Calibration c;
  EXPECT_EQ(c.normalize(7.5), 7.5);
}

}  // namespace
